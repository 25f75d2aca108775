"""Coefficient triples exactly on the constraint alpha * beta^2 * gamma^2 = target.

The paper constrains the grid search at phi = 1 to alpha * beta^2 * gamma^2 ~= 2. Filtering a
box of triples after the fact (what NNI's example does, with a +-0.1 tolerance) wastes most
samples and never lands on the surface. Here the free coefficients but one are sampled and the
last is solved, so every accepted point is on the manifold to float precision; only points
where the solved coefficient would fall below 1 are discarded.

Single-dimension controls (the paper's depth-, width- or resolution-only scaling at the same
cost target) are the same object with one free dimension: nothing is left to sample and the
one point is solved exactly (depth-only at target 2: alpha = 2).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping

import numpy as np

from space import PAPER, Coefficients, UserError

DIMENSIONS = ("depth", "width", "resolution")
COEFFICIENT = {"depth": "alpha", "width": "beta", "resolution": "gamma"}
EXPONENT = {"depth": 1, "width": 2, "resolution": 2}  # cost grows as d * w^2 * r^2


@dataclasses.dataclass(frozen=True)
class Manifold:
    """The feasible coefficients of one study.

    Attributes:
        target: alpha * beta^2 * gamma^2 (the cost growth per unit phi), > 1.
        dimensions: which of depth/width/resolution may grow; the others stay at 1.
            The first listed is solved from the rest.
    """

    target: float = 2.0
    dimensions: tuple[str, ...] = DIMENSIONS

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        unknown = [d for d in self.dimensions if d not in DIMENSIONS]
        if unknown or not self.dimensions or len(set(self.dimensions)) != len(self.dimensions):
            raise UserError(f"dimensions must be distinct names from {DIMENSIONS}, got "
                            f"{self.dimensions}")
        if not math.isfinite(self.target) or self.target <= 1:
            raise UserError(f"the cost target alpha*beta^2*gamma^2 must be > 1 (coefficients "
                            f"are >= 1), got {self.target}")

    @property
    def solved(self) -> str:
        """The dimension whose coefficient is computed from the others."""
        return self.dimensions[0]

    @property
    def sampled(self) -> tuple[str, ...]:
        """The dimensions whose coefficients are sampled (Optuna parameter names: COEFFICIENT)."""
        return self.dimensions[1:]

    def upper(self, dimension: str) -> float:
        """The largest feasible coefficient of a dimension: all the target spent on it."""
        return self.target ** (1 / EXPONENT[dimension])

    def solve(self, sampled: Mapping[str, float]) -> Coefficients | None:
        """The triple with these sampled coefficients, or None if the solved one is < 1.

        Args:
            sampled: coefficient name ("beta", ...) -> value for every sampled dimension.
        """
        coeffs = {"alpha": 1.0, "beta": 1.0, "gamma": 1.0}
        spent = 1.0
        for dim in self.sampled:
            value = float(sampled[COEFFICIENT[dim]])
            if value < 1:
                return None
            coeffs[COEFFICIENT[dim]] = value
            spent *= value ** EXPONENT[dim]
        solved = (self.target / spent) ** (1 / EXPONENT[self.solved])
        if solved < 1 - 1e-12:
            return None
        coeffs[COEFFICIENT[self.solved]] = max(solved, 1.0)
        return Coefficients(**coeffs, target=self.target)

    def grid(self, step: float = 0.05) -> list[dict[str, float]]:
        """Every feasible point of a lattice of the sampled coefficients (1, 1 + step, ...).

        With step 0.05 at target 2 the lattice holds (beta, gamma) = (1.1, 1.15), the paper's
        pair; alpha is then solved exactly (1.2498), where the paper reported the rounded 1.2.
        """
        if step <= 0:
            raise UserError(f"grid step must be > 0, got {step}")
        axes = []
        for dim in self.sampled:
            n = math.floor((self.upper(dim) - 1) / step + 1e-9)
            axes.append([round(1 + i * step, 10) for i in range(n + 1)])
        names = [COEFFICIENT[d] for d in self.sampled]
        points = [dict(zip(names, values, strict=True)) for values in itertools.product(*axes)]
        return [p for p in points if self.solve(p) is not None]

    def design(self, n: int, seed: int) -> list[dict[str, float]]:
        """`n` feasible points of a scrambled Sobol sequence over the sampled box, in order.

        Deterministic for a seed, so a parallel sweep starts from the same design however
        workers interleave. scipy's QMC gives better coverage than i.i.d. uniform points.
        """
        if not self.sampled or n <= 0:
            return []
        from scipy.stats import qmc

        sobol = qmc.Sobol(d=len(self.sampled), scramble=True, seed=seed)
        names = [COEFFICIENT[d] for d in self.sampled]
        lows = np.ones(len(names))
        highs = np.array([self.upper(d) for d in self.sampled])
        out: list[dict[str, float]] = []
        for _ in range(64):  # the feasible share of the box is > 5% for any target > 1
            for row in qmc.scale(sobol.random(max(8, 2 * n)), lows, highs):
                point = {k: float(v) for k, v in zip(names, row, strict=True)}
                if self.solve(point) is not None:
                    out.append(point)
                    if len(out) == n:
                        return out
        return out

    def controls(self) -> list[tuple[str, Coefficients]]:
        """The single-dimension points at this target among the free dimensions."""
        out = []
        for dim in self.dimensions:
            values = {"alpha": 1.0, "beta": 1.0, "gamma": 1.0}
            values[COEFFICIENT[dim]] = self.upper(dim)
            out.append((f"{dim}-only", Coefficients(**values, target=self.target)))
        return out

    def sampled_values(self, coeffs: Coefficients) -> dict[str, float]:
        """The sampled-parameter values of a triple (how to enqueue it as a trial)."""
        return {COEFFICIENT[d]: getattr(coeffs, COEFFICIENT[d]) for d in self.sampled}


def paper_reference(target: float) -> Coefficients:
    """The paper's (1.2, 1.1, 1.15): off the exact manifold by -4% at target 2."""
    return Coefficients(*PAPER.as_tuple(), target=target)
