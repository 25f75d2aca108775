"""The cost factor as a fidelity: rungs that climb matched cost factors (issue 26).

The paper chose its coefficients at 2x the baseline's cost and reused them up to ~100x
unchecked; a ranking at 2x need not hold at 8x (ResNet-RS, Bello et al. 2021; Tay et al.
2022). Epoch halving makes a short training the cheap fidelity of a long one; here a small
network is the cheap fidelity of a larger one of the same direction. JAHS-Bench-201
tabulates model size as a fidelity; no tool schedules over matched-cost sizes, hence this
module.

A study with `CoefficientSearch(factors=(2, 4, 8))` trains every direction at the lowest
factor (target^phi), with epoch halving there as usual. The directions completed (full
budget) at a factor form that factor's rung, and asynchronous successive halving's rule
(`search.halving.top`) sends the best max(1, n // factor_eta) of them on: each is queued
again at the next factor, where its member matched at that cost is another network, trained
from scratch for the full budget (and if another direction's member there is the same
network, that training stands for both). No decision is made before a rung holds factor_eta
results; a direction is promoted later, whenever it enters the top share as weaker ones
arrive; and once the budget is spent and nothing runs, the pending decisions are made with
the rungs as they are, the lowest factor first.

A climb is told to Optuna as a complete trial with its score at the larger factor; a sampler
that learns from complete trials (TPE, GP) would see the climbed directions twice, the second
time scoring higher, and lean further toward them. So the study's sampler is wrapped
(`LowestFactorSampler`): it sees the trials of the lowest factor only.

Budget: `trials` counts distinct networks at the lowest factor; the climbs, like halving's
promotions, do not count. After the search the best `ladder_top` directions at the largest
factor are confirmed with `ladder_seeds` seeds (the search's training is the first seed), and
`export` defaults to the best mean there.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from search.halving import PROMOTED_FROM, widen
from search.kinds.base import FACTOR, LATTICE
from search.pareto import rank_order


def factors_of(config: Any) -> tuple[float, ...]:
    """The study's factor rungs, ascending; () for a search without them."""
    return tuple(getattr(config.search, "factors", ()))


def factor_of(attrs: dict[str, Any], factors: Sequence[float]) -> float:
    """The cost factor a trial trains at (its `FACTOR` attr; else the lowest)."""
    return float(attrs.get(FACTOR, factors[0]))


def is_climb(attrs: dict[str, Any], factors: Sequence[float]) -> bool:
    """Whether a trial trains a direction promoted above the lowest factor: it has no epoch
    rungs (halving works inside the lowest factor only)."""
    return bool(factors) and factor_of(attrs, factors) > factors[0] * (1 + 1e-9)


def rung(trials: Sequence[FrozenTrial], factor: float,
         factors: Sequence[float]) -> list[FrozenTrial]:
    """The directions completed at `factor`: full-budget trials trained there, one per network
    (a proposal of a network already trained reuses its result and is not a second entry)."""
    return [t for t in trials if t.state == TrialState.COMPLETE and t.values
            and "duplicate_of" not in t.user_attrs
            and math.isclose(factor_of(t.user_attrs, factors), factor)]


def promotions(config: Any, trials: Sequence[FrozenTrial], *, final: bool = False,
               band: float = 0.0) -> list[tuple[FrozenTrial, float]]:
    """Directions the rule now sends to the next factor, with that factor, lowest first.

    At each factor but the largest, the best max(1, n // factor_eta) of its n completed
    directions go on (ranked as `halving.top` ranks; no decision with fewer than factor_eta
    results unless `final`; with a noise `band`, also those within it of the weakest of
    them, as in `halving.top`); those never queued at the next factor are returned. A direction
    whose climb cannot be trained (rejected, or failed with no retry left) keeps no place
    among them: the next best takes it.
    """
    factors = factors_of(config)
    if not factors:
        return []
    eta = config.search.factor_eta
    attempts: dict[int, list[FrozenTrial]] = {}  # climbs queued from each trial
    for t in trials:
        if PROMOTED_FROM in t.user_attrs and not t.user_attrs.get("surplus"):
            attempts.setdefault(t.user_attrs[PROMOTED_FROM], []).append(t)
    # A direction whose climb cannot be trained (no network within the tolerance there, or
    # it failed with no retry left) gives its place to the next best; it is not sent again.
    stuck = {n for n, tries in attempts.items()
             if all("rejected" in t.user_attrs or t.state == TrialState.FAIL for t in tries)}
    out = []
    for low, high in itertools.pairwise(factors):
        here = rung(trials, low, factors)
        if not here or (len(here) < eta and not final):
            continue
        points = np.array([list(t.values) for t in here], dtype=float)
        order = [int(i) for i in rank_order(points, config.objective.directions)
                 if here[i].number not in stuck]
        chosen = widen(points, order, max(1, len(here) // eta), config.objective.directions,
                       band)
        out += [(here[i], high) for i in chosen if here[i].number not in attempts]
    return out


def promote(study: optuna.Study, trial: FrozenTrial, factor: float) -> None:
    """Queues `trial`'s direction at `factor`: a new network, trained from scratch."""
    attrs = {k: v for k, v in trial.user_attrs.items()
             if k in ("reference", "coefficients", LATTICE)}  # a lattice point stays exact
    attrs.update({PROMOTED_FROM: trial.number, FACTOR: factor})
    study.enqueue_trial(trial.params, user_attrs=attrs)


def largest_reached(rows: Sequence[Any]) -> float | None:
    """The largest factor at which a row (`records.TrialRow`) was trained to the full
    budget, or None (no factor rungs, or nothing trained)."""
    reached = [r.factor for r in rows
               if r.factor is not None and r.state == "complete" and r.full_budget]
    return max(reached, default=None)


def own_trainings(trials: Sequence[FrozenTrial]) -> Callable[[str, int], Any]:
    """(arch, seed) -> a full-budget training of the study itself (`replay.RecordedResult`),
    or None: the confirmation's first seed is the search's own training, not trained again."""
    from search.replay import RecordedResult

    done: dict[tuple[str, int], dict[str, Any]] = {}
    for t in trials:
        a = t.user_attrs
        if t.state == TrialState.COMPLETE and "arch" in a and "seed" in a \
                and a.get("budget") == a.get("max_budget"):
            done.setdefault((a["arch"], int(a["seed"])), a)

    def lookup(arch: str, seed: int) -> Any:
        attrs = done.get((arch, seed))
        return None if attrs is None else RecordedResult(dict(attrs))
    return lookup


class _LowestFactorView:
    """A study as its sampler should see it under factor rungs: the climbs left out (every
    other attribute is the study's)."""

    def __init__(self, study: optuna.Study, factors: Sequence[float]) -> None:
        self._study, self._factors = study, factors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._study, name)

    def _keep(self, trials: Sequence[FrozenTrial]) -> list[FrozenTrial]:
        return [t for t in trials if not is_climb(t.user_attrs, self._factors)]

    def _get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        return self._keep(self._study._get_trials(*args, **kwargs))

    def get_trials(self, *args: Any, **kwargs: Any) -> list[FrozenTrial]:
        return self._keep(self._study.get_trials(*args, **kwargs))

    @property
    def trials(self) -> list[FrozenTrial]:
        return self.get_trials()


class LowestFactorSampler(optuna.samplers.BaseSampler):
    """Wraps a study's sampler so that it learns from the lowest factor's trials only. Why
    not a sampler option: Optuna's samplers read the study's trials themselves (TPE through
    `Study._get_trials`), so the view is what they are handed."""

    def __init__(self, inner: optuna.samplers.BaseSampler, factors: Sequence[float]) -> None:
        self.inner, self._factors = inner, tuple(factors)

    def _view(self, study: optuna.Study) -> Any:
        return _LowestFactorView(study, self._factors)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> Any:
        return self.inner.infer_relative_search_space(self._view(study), trial)

    def sample_relative(self, study: optuna.Study, trial: FrozenTrial,
                        search_space: Any) -> dict[str, Any]:
        return self.inner.sample_relative(self._view(study), trial, search_space)

    def sample_independent(self, study: optuna.Study, trial: FrozenTrial, param_name: str,
                           param_distribution: Any) -> Any:
        return self.inner.sample_independent(self._view(study), trial, param_name,
                                             param_distribution)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        self.inner.before_trial(study, trial)

    def after_trial(self, study: optuna.Study, trial: FrozenTrial, state: TrialState,
                    values: Sequence[float] | None) -> None:
        self.inner.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        self.inner.reseed_rng()
