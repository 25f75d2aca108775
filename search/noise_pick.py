"""Noise-aware decisions (issue 27, part 2): directions the proxy's noise cannot tell apart
get more seeds before one is exported, and halving promotes them alike.

A single training's score carries the proxy's seed noise (on CIFAR-10 at 2x a seed std of
0.010 against a spread of 0.022 across directions, experiments/README.md E.3), so the best
single score is often a lucky seed. The rule: after the search, at the factor the export is
taken from, every full-budget direction whose score is within the noise band of the leader,
1.96 sqrt(2) seed stds (two single scores of one network differ by more 5% of the time), is
trained with `noise_seeds` seeds in all (its search training is the first), and the best
mean is exported. The seed std is the study's measured one (`effsearch reliability --store`)
or the config's `noise_std`. The extra trainings are the scale ladder's rows at that factor
(search/ladder.py), so `front` shows them and `export` picks from them.

Promotions (`noise_promotions`): at a halving rung, every result within the same band of the
weakest one the rule sends on goes on too (`halving.top`), so a direction is not stopped for
an unlucky seed at the cutoff. The band uses the full-budget seed std; a rung's own noise,
after fewer epochs, is larger, so this band is the narrower of the two.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from search import reliability
from search.records import TrialRow
from space import UserError


def seed_std(study: Any, config: Any) -> float:
    """The proxy's seed std: the config's `noise_std`, else the study's stored record."""
    if config.noise_std is not None:
        return float(config.noise_std)
    stored = study.user_attrs.get(reliability.ATTR)
    if not stored:
        who = ("noise_promotions" if config.noise_promotions
               else f"noise_seeds={config.noise_seeds}")
        raise UserError(f"{who} needs the proxy's seed std: run `effsearch reliability CONFIG "
                        f"--store {study.study_name}` or set noise_std in the config; the "
                        f"study is kept")
    return reliability.Reliability.from_json(stored).seed_std


def promotion_band(study: Any, config: Any) -> float:
    """The noise band of halving's promotions (`halving.top`): 0 unless noise_promotions."""
    return reliability.noise_band(seed_std(study, config)) if config.noise_promotions else 0.0


def within_band(rows: Sequence[TrialRow], std: float, factor: float | None = None) -> int:
    """How many distinct full-budget networks (at `factor`, if given) score within the noise
    band of the best: the ladder's `top` that covers exactly them."""
    full = [r for r in rows if r.state == "complete" and r.full_budget
            and r.duplicate_of is None and (factor is None or r.factor == factor)]
    if not full:
        return 0
    leader = max(r.score for r in full)
    return len({r.arch for r in full if leader - r.score <= reliability.noise_band(std)})
