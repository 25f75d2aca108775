"""A forecast of the best scaling direction at a cost factor not trained (issue 26, part 2).

Two fits of accuracy over directions (shares s of the log-cost: depth, width, resolution) and
cost factors f, both linear least squares (scipy), both judged by extrapolation (fit on the
table's 2x and 4x, predict 8x: experiments/README.md), never by fit:

- "separable" (7 parameters), after SoViT's per-dimension laws (Alabdulmohsin et al. 2023):
  each dimension's log-size x_d = s_d * log2(f) adds a concave a_d * x_d - b_d * x_d^2
  (b_d >= 0: diminishing returns, fitted with bounds); accuracy = c + sum_d (a_d x_d - b_d
  x_d^2). At a factor, the best split equalises the dimensions' marginal returns, and as f
  grows it moves toward the dimensions that saturate slowest: the best direction may change
  with scale, which is what a forecast is for. Needs two factors (at one, sum_d x_d is fixed
  and c and the a_d are not identified).
- "iso-cost" (6 per factor), after Chinchilla's approach 2 (Hoffmann et al. 2022): a
  quadratic over the simplex at each factor, its coefficients extrapolated linearly in log2(f)
  from the two largest factors. Needs six directions at each of them: a table, rarely a
  study's upper rungs.

Trainings that halving stopped early count too, for the separable fit, if they ran at least
`MIN_FRACTION` of the longest budget: each shorter budget adds one offset (accuracy after 3
of 4 epochs is lower by a constant, the directions' differences are taken to be the same), so
a study whose halving sends few trainings to the full budget still gives enough points;
predictions are at the full budget. Shorter trainings are left out because their ranking is
another one, not a noisier copy: on the CIFAR-10 table at 2x the directions' scores after 1
of 4 epochs rank them at Spearman 0.55 against their final scores, after 3 epochs at 0.97;
in the replay of a factor search on that table (its 2x and 4x rungs, predicting the 22
directions of the table's 8x part on its first seed; experiments/README.md part F), the
forecast's Spearman was 0.27 on average over 12 replays with the 1-epoch trainings and 0.89
over the 11 of them it could fit without.

The interval is a case bootstrap: the trainings are resampled with replacement (within each
factor), refitted and the candidates predicted again; each direction gets the 2.5-97.5%
percentiles of its predicted accuracy and the share of resamples in which it is the best.
Two factors identify little: the interval says how little.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import optimize

MODELS = ("separable", "iso-cost")
# Trainings stopped before this share of the longest budget are left out (see above).
MIN_FRACTION = 0.5
# (shares, factor, score) of a full-budget training, or (shares, factor, score, epochs)
Point = tuple[Any, ...]


@dataclasses.dataclass(frozen=True)
class Forecast:
    """What a fit predicts at `factor` for each candidate direction.

    Attributes:
        factor: the cost factor predicted.
        model: "separable" or "iso-cost".
        parameters: the fit's free parameters.
        fitted_on: the factors of the trainings fitted, and how many at each.
        left_out: trainings stopped before `min_fraction` of the longest budget, not fitted.
        candidates: the directions predicted (shares), best predicted first.
        predicted: the fit's accuracy for each candidate (on all trainings).
        low, high: its 95% bootstrap percentiles.
        p_best: the share of bootstrap refits in which it is predicted best.
        resamples: bootstrap refits.
        spread: the range of the fitted trainings' scores (best - worst).
    """

    factor: float
    model: str
    parameters: int
    fitted_on: dict[float, int]
    left_out: int
    candidates: tuple[tuple[float, float, float], ...]
    predicted: tuple[float, ...]
    low: tuple[float, ...]
    high: tuple[float, ...]
    p_best: tuple[float, ...]
    resamples: int
    spread: float

    @property
    def best(self) -> tuple[float, float, float]:
        return self.candidates[0]

    @property
    def vague(self) -> bool:
        """Whether the intervals are wider (median over the candidates) than the fitted
        scores' whole range: the trainings do not pin the fit, and its order is a shortlist
        to train, not a ranking. (A factor search's few trainings above its lowest rung
        usually leave it so: experiments/README.md F.5.) False without resamples."""
        widths = np.array(self.high) - np.array(self.low)
        return self.resamples > 0 and float(np.median(widths)) > self.spread

    def summary(self, top: int = 5) -> dict[str, Any]:
        """The forecast as JSON: settings and the `top` best candidates."""
        return {"factor": self.factor, "model": self.model, "parameters": self.parameters,
                "fitted_on": {f"{f:g}": n for f, n in self.fitted_on.items()},
                "left_out": self.left_out,
                "resamples": self.resamples, "spread": self.spread, "vague": self.vague,
                "directions": [{"shares": list(s), "predicted": p, "low": lo, "high": hi,
                                "p_best": pb}
                               for s, p, lo, hi, pb in zip(self.candidates, self.predicted,
                                                           self.low, self.high, self.p_best,
                                                           strict=True)][:top]}


def _separable_features(shares: np.ndarray, factors: np.ndarray,
                        short: np.ndarray | None = None) -> np.ndarray:
    """[1, x_d, -x_d^2] with x_d = s_d log2(f), then one indicator per shorter budget."""
    x = shares * np.log2(factors)[:, None]
    columns = [np.ones((len(x), 1)), x, -(x**2)]
    if short is not None:
        columns.append(short)
    return np.hstack(columns)


def _quadratic_features(shares: np.ndarray) -> np.ndarray:
    w, r = shares[:, 1], shares[:, 2]  # depth = 1 - w - r
    return np.stack([np.ones_like(w), w, r, w * w, w * r, r * r], axis=1)


class _Fit:
    """One fitted model: `predict(shares, factor)`."""

    def __init__(self, model: str, shares: np.ndarray, factors: np.ndarray,
                 scores: np.ndarray, short: np.ndarray) -> None:
        """`short`: one indicator column per budget shorter than the full one."""
        self.model = model
        if model == "separable":
            features = _separable_features(shares, factors, short)
            lower = np.r_[np.full(4, -np.inf), np.zeros(3), np.full(short.shape[1], -np.inf)]
            self.theta = optimize.lsq_linear(features, scores, bounds=(lower, np.inf)).x[:7]
            return
        full = ~short.any(axis=1)
        shares, factors, scores = shares[full], factors[full], scores[full]
        self.at: dict[float, np.ndarray] = {}
        for f in sorted(set(factors.tolist()))[-2:]:
            mine = factors == f
            self.at[f] = np.linalg.lstsq(_quadratic_features(shares[mine]), scores[mine],
                                         rcond=None)[0]

    def predict(self, shares: np.ndarray, factor: float) -> np.ndarray:
        if self.model == "separable":
            return _separable_features(shares, np.full(len(shares), factor)) @ self.theta
        (f1, t1), (f2, t2) = sorted(self.at.items())
        slope = (t2 - t1) / (math.log2(f2) - math.log2(f1))
        theta = t2 + slope * (math.log2(factor) - math.log2(f2))
        return _quadratic_features(shares) @ theta


def _epochs(points: Sequence[Point]) -> list[float]:
    """Each point's budget in epochs; a point without one had the longest (the full) budget."""
    given = [p[3] for p in points if len(p) > 3]
    longest = max(given, default=math.inf)
    return [p[3] if len(p) > 3 else longest for p in points]


def usable(points: Sequence[Point], min_fraction: float = MIN_FRACTION) -> list[Point]:
    """The points a fit uses: those trained for at least `min_fraction` of the longest
    budget among them."""
    epochs = _epochs(points)
    longest = max(epochs, default=math.inf)
    return [p for p, e in zip(points, epochs, strict=True) if e >= min_fraction * longest]


def _budgets(points: Sequence[Point]) -> np.ndarray:
    """One indicator column per budget below the longest."""
    epochs = np.array(_epochs(points), dtype=float)
    longest = epochs.max() if len(epochs) else math.inf
    shorter = sorted(set(epochs[epochs < longest].tolist()))
    return np.array([[e == b for b in shorter] for e in epochs], dtype=float).reshape(
        len(points), len(shorter))


def parameters(model: str, points: Sequence[Point] = (),
               min_fraction: float = MIN_FRACTION) -> int:
    """The fit's free parameters: 7 (separable; one more per shorter budget among the
    `usable` `points`) or 12 (iso-cost)."""
    if model == "iso-cost":
        return 12
    points = usable(points, min_fraction)
    return 7 + _budgets(points).shape[1] if points else 7


def check(points: Sequence[Point], model: str,
          min_fraction: float = MIN_FRACTION) -> str | None:
    """Why `points` cannot be fitted by `model`, or None (counting the `usable` ones)."""
    given, points = len(points), usable(points, min_fraction)
    left_out = (f" ({given - len(points)} stopped before {min_fraction:.0%} of the longest "
                f"budget are left out)" if given > len(points) else "")
    if model not in MODELS:
        return f"the forecast model must be one of {', '.join(MODELS)}, got {model!r}"
    if model == "iso-cost" and points:  # full-budget trainings only
        short = _budgets(points)
        points = [p for p, s in zip(points, short, strict=True) if not s.any()]
    counts: dict[float, set[tuple[float, ...]]] = {}
    for shares, factor, *_ in points:
        counts.setdefault(factor, set()).add(tuple(round(s, 6) for s in shares))
    if len(counts) < 2:
        return (f"a forecast needs trainings at two factors at least; there are "
                f"{'none' if not counts else 'only ' + ', '.join(f'{f:g}x' for f in counts)}"
                f"{left_out}")
    needed = parameters(model, points, 0.0)  # `points` are the usable ones already
    if model == "separable" and len(points) < needed:
        return (f"the separable fit has {needed} parameters and only {len(points)} trainings"
                f"{left_out}")
    if model == "iso-cost":
        thin = [f for f in sorted(counts)[-2:] if len(counts[f]) < 6]
        if thin:
            return (f"the iso-cost fit needs six directions at each of its two largest "
                    f"factors; {', '.join(f'{f:g}x' for f in thin)} has fewer")
    return None


def forecast(points: Sequence[Point], factor: float,
             candidates: Sequence[tuple[float, float, float]], *, model: str = "separable",
             resamples: int = 200, seed: int = 0,
             min_fraction: float = MIN_FRACTION) -> Forecast:
    """Fits the `usable` `points` (shares, factor, score[, epochs]; one per training) and
    predicts `candidates` at `factor`, with a case bootstrap within each fitted factor
    (`resamples` 0: none). `min_fraction`: see `usable` (0 fits every training).

    Raises:
        ValueError: the points cannot be fitted by the model (`check` says why).
    """
    why = check(points, model, min_fraction)
    if why:
        raise ValueError(why)
    given, points = len(points), usable(points, min_fraction)
    shares = np.array([p[0] for p in points], dtype=float)
    factors = np.array([p[1] for p in points], dtype=float)
    scores = np.array([p[2] for p in points], dtype=float)
    short = _budgets(points)
    grid = np.array(candidates, dtype=float)
    central = _Fit(model, shares, factors, scores, short).predict(grid, factor)
    rng = np.random.default_rng(seed)
    groups = [np.flatnonzero(factors == f) for f in np.unique(factors)]
    draws = np.empty((resamples, len(grid)))
    for i in range(resamples):
        pick = np.concatenate([rng.choice(g, len(g)) for g in groups])
        draws[i] = _Fit(model, shares[pick], factors[pick], scores[pick],
                        short[pick]).predict(grid, factor)
    if resamples:
        wins = np.bincount(draws.argmax(axis=1), minlength=len(grid)) / resamples
        low, high = np.percentile(draws, [2.5, 97.5], axis=0)
    else:  # the point forecast alone (the replay benchmark's thousands of fits)
        wins = np.eye(len(grid))[central.argmax()]
        low = high = central
    order = np.lexsort((-wins, -central))  # best predicted first
    return Forecast(
        factor=float(factor), model=model, parameters=parameters(model, points, 0.0),
        fitted_on={float(f): int((factors == f).sum()) for f in np.unique(factors)},
        left_out=given - len(points),
        candidates=tuple(tuple(float(v) for v in grid[i]) for i in order),  # type: ignore[misc]
        predicted=tuple(float(central[i]) for i in order),
        low=tuple(float(low[i]) for i in order), high=tuple(float(high[i]) for i in order),
        p_best=tuple(float(wins[i]) for i in order), resamples=resamples,
        spread=float(scores.max() - scores.min()))


def spearman(result: Forecast, candidates: Sequence[tuple[float, ...]],
             truth: Sequence[float]) -> float:
    """How the forecast ranks `candidates` (among those it predicted) against their `truth`:
    Spearman's rho, the measure the forecast is judged by (by extrapolation)."""
    from scipy import stats

    predicted: dict[tuple[float, ...], float] = dict(zip(result.candidates, result.predicted,
                                                          strict=True))
    return float(stats.spearmanr([predicted[tuple(c)] for c in candidates], truth)[0])


def study_points(rows: Sequence[Any]) -> list[Point]:
    """(shares, factor, score, epochs) of a study's trainings (`records.TrialRow`s of a study
    with factor rungs): full-budget, or stopped by halving at a rung; one per training."""
    # A stopped trial that halving promoted is continued by its promotion (from its
    # checkpoint): one training, counted once, at the budget it reached.
    continued = {r.promoted_from for r in rows if r.promoted_from is not None}
    return [((r.depth_share, r.width_share, r.resolution_share), r.factor, r.score, r.budget)
            for r in rows if r.factor is not None and r.duplicate_of is None
            and r.depth_share is not None and r.budget is not None
            and (r.full_budget if r.state == "complete"
                 else r.state == "pruned" and r.trial not in continued)]


def matchable(search: Any, baseline_arch: str,
              factor: float) -> list[tuple[float, float, float]]:
    """The search's lattice directions (its `grid_step`) whose rounded network at `factor`
    is within the search's tolerance of that cost: what could be trained there."""
    import space
    from search.manifold import shares_of
    from space.family import match_phi

    simplex = search.directions
    baseline = space.resolve(baseline_arch)
    out = []
    for params in simplex.grid(search.grid_step):
        coeffs = simplex.coefficients(params)
        _, _, ratio = match_phi(baseline, coeffs, factor, cost_key=search.match,
                                      resolution_multiple=search.resolution_multiple,
                                      channel_divisor=search.channel_divisor)
        if abs(ratio / factor - 1) <= search.tolerance:
            depth, width, resolution = (float(v) for v in shares_of(coeffs).values())
            out.append((depth, width, resolution))
    return out


def study_forecast(rows: Sequence[Any], search: Any, factor: float, *,
                   model: str = "separable", resamples: int = 200) -> Forecast | str:
    """The forecast at `factor` from a study's trainings at its factor rungs, over the lattice
    directions matchable there; or why there is none (one line)."""
    points = study_points(rows)
    why = check(points, model)
    if why:
        return why
    baseline = next(r.baseline_arch for r in rows if r.baseline_arch)
    candidates = matchable(search, baseline, factor)
    if not candidates:
        return (f"no direction of the {search.grid_step:g} lattice has a network within "
                f"{search.tolerance:.0%} of {factor:g}x")
    return forecast(points, factor, candidates, model=model, resamples=resamples)
