"""Non-dominated sorting, crowding distance and the knee of a front (NSGA-II, Deb et al. 2002).

Written here because Optuna keeps its non-dominated sort private
(`optuna.study._multi_objective`) and pymoo would be a heavy dependency for forty lines.
All functions take a (n_points, n_objectives) array and per-objective directions; internally
every objective is turned into one to minimise.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

MAXIMIZE, MINIMIZE = "maximize", "minimize"


def _as_minimised(values: np.ndarray | Sequence, directions: Sequence[str]) -> np.ndarray:
    points = np.asarray(values, dtype=float).reshape(-1, len(directions))
    signs = np.array([-1.0 if d == MAXIMIZE else 1.0 for d in directions])
    return points * signs


def nondominated_ranks(values: np.ndarray | Sequence, directions: Sequence[str]) -> np.ndarray:
    """Front index of every point: 0 for the Pareto front, 1 for the front without it, ...

    O(n^2) comparisons, fine for the thousands of trials a study holds.
    """
    points = _as_minimised(values, directions)
    n = len(points)
    if n == 0:
        return np.zeros(0, dtype=int)
    le = np.all(points[:, None, :] <= points[None, :, :], axis=2)
    lt = np.any(points[:, None, :] < points[None, :, :], axis=2)
    dominates = le & lt  # dominates[i, j]: i dominates j
    ranks = np.full(n, -1)
    remaining = np.ones(n, dtype=bool)
    rank = 0
    while remaining.any():
        dominated = (dominates & remaining[:, None]).any(axis=0)
        front = remaining & ~dominated
        ranks[front] = rank
        remaining &= ~front
        rank += 1
    return ranks


def crowding_distance(values: np.ndarray | Sequence, directions: Sequence[str]) -> np.ndarray:
    """NSGA-II crowding distance within one set of points (inf at the extremes)."""
    points = _as_minimised(values, directions)
    n, m = points.shape
    distance = np.zeros(n)
    if n <= 2:
        return np.full(n, np.inf)
    for k in range(m):
        order = np.argsort(points[:, k], kind="stable")
        span = points[order[-1], k] - points[order[0], k]
        distance[order[0]] = distance[order[-1]] = np.inf
        if span > 0:
            distance[order[1:-1]] += (points[order[2:], k] - points[order[:-2], k]) / span
    return distance


def rank_order(values: np.ndarray | Sequence, directions: Sequence[str]) -> np.ndarray:
    """Indices from best to worst: by front, then by crowding distance within a front."""
    points = np.asarray(values, dtype=float).reshape(-1, len(directions))
    ranks = nondominated_ranks(points, directions)
    crowding = np.zeros(len(points))
    for r in np.unique(ranks):
        members = ranks == r
        crowding[members] = crowding_distance(points[members], directions)
    return np.lexsort((-crowding, ranks))


def knee(values: np.ndarray | Sequence, directions: Sequence[str]) -> int:
    """The index of the front point farthest from the line through the front's extremes.

    Objectives are normalised to [0, 1] first, so the units (accuracy vs MACs) do not matter.
    A front of one or two points has no interior point (and both ends tie on crowding
    distance), so there it is the front point that gives up least against the front's best
    value in each objective, each loss measured in units of that objective's spread over all
    points (a compromise-programming choice: a tiny MACs saving does not outweigh a large
    accuracy loss). With more than two objectives, the first of `rank_order`.
    """
    points = np.asarray(values, dtype=float).reshape(-1, len(directions))
    ranks = nondominated_ranks(points, directions)
    front = np.flatnonzero(ranks == 0)
    if len(directions) != 2:
        return int(rank_order(points, directions)[0])
    if len(front) <= 2:
        p = _as_minimised(points, directions)
        span = p.max(axis=0) - p.min(axis=0)
        regret = (p[front] - p[front].min(axis=0)) / np.where(span > 0, span, 1)
        return int(front[int(np.argmin(regret.sum(axis=1)))])
    p = _as_minimised(points[front], directions)
    span = p.max(axis=0) - p.min(axis=0)
    p = (p - p.min(axis=0)) / np.where(span > 0, span, 1)
    a, b = p[np.argmin(p[:, 0])], p[np.argmax(p[:, 0])]
    line = (b - a) / (np.linalg.norm(b - a) or 1.0)
    rel = p - a
    dist = np.abs(rel[:, 0] * line[1] - rel[:, 1] * line[0])
    return int(front[int(np.argmax(dist))])
