"""Successive halving and Hyperband over proxy epochs, promoting by non-dominated rank.

Optuna cannot prune a multi-objective study (`Trial.report` raises there, optuna/optuna#3450).
This is asynchronous successive halving (ASHA, Li et al. 2020) with the promotion rule of
Archai's SuccessiveHalvingSearch: at a rung, a trial goes on if it is among the best
max(1, n // eta) of the n trials of its bracket that reached that rung so far, ordered by
non-dominated rank and then crowding distance. The first trial at a rung always goes on,
as in Optuna's SuccessiveHalvingPruner. With several brackets (Hyperband, Li et al. 2018),
bracket s starts deciding at min_epochs * eta^s, and trials are dealt to brackets by number.

A stopped trial is recorded as PRUNED, with its values at each rung (`rung_<epoch>`), its
`stopped_at` and its `budget` as user attrs: Optuna's own views (`study.best_trials`,
optuna-dashboard's Pareto front) then hold only full-budget results, and `front --all` still
lists the stopped trials with their budget.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from search.pareto import rank_order
from space import UserError


@dataclasses.dataclass(frozen=True)
class Halving:
    """Rungs at min_epochs * eta^k epochs, up to (not including) the proxy's full budget.

    Attributes:
        min_epochs: the first rung's budget.
        eta: keep 1/eta of the trials at each rung.
        brackets: 1 for successive halving; more for Hyperband's brackets.
    """

    min_epochs: int = 1
    eta: int = 3
    brackets: int = 1

    def __post_init__(self) -> None:
        if self.min_epochs < 1 or self.eta < 2 or self.brackets < 1:
            raise UserError(f"halving needs min_epochs >= 1, eta >= 2 and brackets >= 1, got "
                            f"{self.min_epochs}, {self.eta}, {self.brackets}")

    def bracket(self, trial_number: int) -> int:
        return trial_number % self.brackets

    def rungs(self, max_epochs: int, bracket: int = 0) -> list[int]:
        """The epochs at which a trial of `bracket` is compared, ascending."""
        out, epochs = [], self.min_epochs * self.eta**bracket
        while epochs < max_epochs:
            out.append(epochs)
            epochs *= self.eta
        return out


def promote(mine: Sequence[float], others: Sequence[Sequence[float]],
            directions: Sequence[str], eta: int) -> bool:
    """Whether a trial with values `mine` at a rung goes on to the next one.

    Args:
        mine: this trial's objective values at the rung.
        others: the values of the other trials of the same bracket at the same rung.
        directions: "maximize"/"minimize" per objective.
        eta: the reduction factor.
    """
    points = np.array([list(mine), *[list(o) for o in others]], dtype=float)
    keep = max(1, len(points) // eta)
    order = rank_order(points, directions)
    return bool(0 in order[:keep])
