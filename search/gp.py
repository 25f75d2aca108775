"""Optuna's GPSampler for searches that reject candidates before training."""

from __future__ import annotations

from typing import Any

import optuna
from optuna.distributions import BaseDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

REPEAT_TOLERANCE = 1e-3
"""How close (as a fraction of each parameter's range) a proposal must be to a rejected
trial's parameters to count as proposing it again."""


class RejectionAwareGPSampler(optuna.samplers.GPSampler):
    """Optuna's GPSampler that does not propose a rejected point again.

    A candidate the search rejects before training (its rounded network misses the matched
    cost) is told PRUNED without a value. GPSampler fits COMPLETE trials only, so its
    acquisition optimum stays where it was, and it proposes that same infeasible point on
    every later trial (measured: 500 rejections in a row, then "the target looks infeasible",
    replaying the MNIST direction table at 5% tolerance). TPE ranks pruned trials as bad and
    random search moves on; here a proposal within `REPEAT_TOLERANCE` of a rejected trial's
    falls back to the sampler's independent (random) sampling for that trial, which is what
    Optuna does when `sample_relative` returns nothing, and so do the trials after it until a
    new result changes the model (refitting an unchanged model would find the same optimum).
    GPSampler's constraint support cannot help: it needs the infeasible trials COMPLETE with
    an objective value, which a candidate that was never trained does not have.
    """

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._stuck_at: int | None = None  # COMPLETE trials when it last re-proposed a reject

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: dict[str, BaseDistribution]) -> dict[str, Any]:
        trials = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,
                                                          TrialState.PRUNED))
        complete = sum(t.state == TrialState.COMPLETE for t in trials)
        if complete == self._stuck_at:  # the model has not changed since: nor its optimum
            return {}
        params = super().sample_relative(study, trial, search_space)
        if params and any(_close(params, t.params, search_space) for t in trials
                          if "rejected" in t.user_attrs):
            self._stuck_at = complete
            return {}
        return params


def _close(a: dict[str, Any], b: dict[str, Any],
           space: dict[str, BaseDistribution]) -> bool:
    if a.keys() != b.keys():
        return False
    for name, value in a.items():
        d = space[name]
        span = (d.high - d.low) if isinstance(d, FloatDistribution | IntDistribution) else 0.0
        if not isinstance(value, (int, float)) or span <= 0:
            if value != b[name]:
                return False
        elif abs(value - b[name]) > REPEAT_TOLERANCE * span:
            return False
    return True
