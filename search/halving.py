"""Successive halving and Hyperband over proxy epochs, promoting by non-dominated rank.

Why not Optuna's pruners: they cannot prune a multi-objective study (`Trial.report` raises
there, optuna/optuna#3450), and a trial they stop stays stopped (Optuna cannot suspend and
resume a trial, its SuccessiveHalvingPruner says so), so the trials that reach a rung first,
meeting few rivals, are judged on less evidence than later ones.

This is asynchronous successive halving (ASHA, Li et al. 2020) with its promotion rule: a
trial at a rung goes on only if it is among the best max(1, n // eta) of the n trials of its
bracket that reached that rung, ordered by non-dominated rank and then crowding distance (one
objective: by value), and only once the rung holds at least eta results; otherwise it stops
there. A stopped trial is *promoted* later, whenever it enters that top share as weaker
rivals arrive, and when the study's budget is spent every pending decision is made with the
rung as it is. A promotion continues from the checkpoint its stopped original left at the
rung (`effsearch search --checkpoints DIR`: by default the study's work directory, or any
folder every worker reaches, gs:// included), and retrains from scratch with the same seed,
the same curve up to the rung, where there is none; it is judged again at the next rung.
With several brackets (Hyperband, Li et al. 2018), bracket s starts deciding at
min_epochs * eta^s, and trials are dealt to brackets by number.

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

# User attrs of a promotion: the trial it continues, the rung it passed, its bracket.
PROMOTED_FROM, PROMOTED_RUNG, BRACKET = "promoted_from", "promoted_rung", "bracket"


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
            directions: Sequence[str], eta: int, *, final: bool = False,
            band: float = 0.0) -> bool:
    """Whether a trial with values `mine` at a rung goes on to the next one now.

    Args:
        mine: this trial's objective values at the rung.
        others: the values of the other trials of the same bracket at the same rung.
        directions: "maximize"/"minimize" per objective.
        eta: the reduction factor.
        final: decide even with fewer than eta results (the study's budget is spent).
        band: the noise band of `top` (one objective only).
    """
    return 0 in top(np.array([list(mine), *[list(o) for o in others]], dtype=float),
                    directions, eta, final=final, band=band)


def top(points: np.ndarray | Sequence, directions: Sequence[str], eta: int, *,
        final: bool = False, band: float = 0.0) -> list[int]:
    """The indices of a rung's results that go on: the best max(1, n // eta), or none while
    the rung holds fewer than eta results (unless `final`).

    `band` > 0 (one objective; issue 27's noise-aware promotions): every result within
    `band` of the weakest of those goes on too, as the proxy's seed noise cannot tell them
    apart from it. Ties at the cutoff then do not depend on which seed each drew.
    """
    points = np.asarray(points, dtype=float).reshape(-1, len(directions))
    if len(points) < eta and not final:
        return []
    order = [int(i) for i in rank_order(points, directions)]
    return widen(points, order, max(1, len(points) // eta), directions, band)


def widen(points: np.ndarray, order: Sequence[int], keep: int, directions: Sequence[str],
          band: float) -> list[int]:
    """The first `keep` of `order` (indices into `points`, best first), and with `band` > 0
    the rest of it that lies within `band` of the last of them (one objective)."""
    chosen = list(order[:keep])
    if band <= 0 or not chosen:
        return chosen
    if len(directions) != 1:
        raise UserError(f"a noise band compares one objective; there are {len(directions)}")
    sign = 1.0 if directions[0] == "maximize" else -1.0
    cutoff = sign * points[chosen[-1]][0]
    return chosen + [i for i in order[keep:] if cutoff - sign * points[i][0] <= band]
