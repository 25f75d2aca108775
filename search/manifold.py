"""Coefficient triples exactly on the constraint alpha * beta^2 * gamma^2 = target, in two
parameterizations: `Simplex` (the default: a scaling rule as a direction, the shares of the
log-cost spent on each dimension) and `Manifold` (coefficients sampled, one solved; kept for
studies made before shares and for the paper's coefficient grid).

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
from typing import TYPE_CHECKING

import numpy as np

from space import PAPER, Coefficients, UserError

if TYPE_CHECKING:
    import optuna

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

    def suggest(self, trial: optuna.Trial) -> Coefficients | str:
        """The trial's triple from its sampled coefficients, or why it is infeasible."""
        sampled = {COEFFICIENT[d]: trial.suggest_float(COEFFICIENT[d], 1.0, self.upper(d))
                   for d in self.sampled}
        coeffs = self.solve(sampled)
        if coeffs is None:
            return (f"{COEFFICIENT[self.solved]} would be < 1 for {sampled}: off the feasible "
                    f"part of the manifold")
        return coeffs

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
        return Coefficients(coeffs["alpha"], coeffs["beta"], coeffs["gamma"], target=self.target)

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
            out.append((f"{dim}-only", Coefficients(values["alpha"], values["beta"],
                                                    values["gamma"], target=self.target)))
        return out

    def params_of(self, coeffs: Coefficients) -> dict[str, float]:
        """The sampled-parameter values of a triple (how to enqueue it as a trial)."""
        return {COEFFICIENT[d]: getattr(coeffs, COEFFICIENT[d]) for d in self.sampled}


SHARE_PARAMS = ("share_u", "share_v")


@dataclasses.dataclass(frozen=True)
class Simplex:
    """Scaling directions: the shares (s_d, s_w, s_r) >= 0, summing to 1, of log(target) spent
    on depth, width and resolution: alpha = target^s_d, beta = target^(s_w / 2),
    gamma = target^(s_r / 2). Every point is on the constraint and feasible by construction.

    Samplers see a box: `share_u`, `share_v` in [0, 1] (one of them with two free dimensions,
    none with one), mapped onto the simplex so that a uniform box point is a uniform direction
    (s_1 = 1 - sqrt(1 - u), s_2 = (1 - s_1) v, s_3 = (1 - s_1)(1 - v), the standard
    area-preserving map of the unit square onto a triangle). Random search, TPE's prior and
    Sobol designs are then uniform over directions rather than crowded at one corner, as the
    plain stick-breaking box (s_1 = u) would be.

    Attributes:
        target: alpha * beta^2 * gamma^2 (the cost growth per unit phi), > 1.
        dimensions: which of depth/width/resolution may grow (shares of the others are 0).
        snap: a share below this is set to 0 and the others rescaled to sum to 1. The faces
            of the simplex (directions that leave a dimension unscaled) are lines and points,
            never drawn from a continuous box, yet rounding makes them distinct networks:
            depth rounds up (ceil), so any depth share > 0 adds a block to every stage. On the
            MNIST direction table the five best directions have depth share exactly 0, and
            random search and TPE without snapping never proposed one.
    """

    target: float = 2.0
    dimensions: tuple[str, ...] = DIMENSIONS
    snap: float = 0.0

    def __post_init__(self) -> None:
        Manifold(self.target, self.dimensions)  # the same validation
        if not 0 <= self.snap < 0.5:
            raise UserError(f"snap must be in [0, 0.5), got {self.snap}")
        # The stick is broken in the canonical order, whatever order the user listed.
        object.__setattr__(self, "dimensions",
                           tuple(d for d in DIMENSIONS if d in self.dimensions))

    @property
    def params(self) -> tuple[str, ...]:
        return SHARE_PARAMS[: len(self.dimensions) - 1]

    def shares(self, params: Mapping[str, float]) -> dict[str, float]:
        """The share of every dimension (0 for those not free) at a box point."""
        out = dict.fromkeys(DIMENSIONS, 0.0)
        dims = self.dimensions
        if len(dims) == 1:
            out[dims[0]] = 1.0
        elif len(dims) == 2:
            out[dims[0]] = float(params["share_u"])
            out[dims[1]] = 1.0 - out[dims[0]]
        else:
            # Clamped, as `params_of` clamps what it writes: a box point computed elsewhere
            # can be a rounding error outside [0, 1], and a share of -1e-16 is a coefficient
            # below 1.
            first = max(0.0, 1.0 - math.sqrt(max(0.0, 1.0 - float(params["share_u"]))))
            v = float(params["share_v"])
            rest = 1 - first
            out[dims[0]], out[dims[1]], out[dims[2]] = first, rest * v, rest * (1 - v)
        if self.snap:
            # The slack keeps lattice points (a share of exactly `snap`) where they are.
            kept = {d: v if v >= self.snap - 1e-9 else 0.0 for d, v in out.items()}
            total = sum(kept.values())
            out = {d: v / total for d, v in kept.items()}
        return out

    def coefficients(self, params: Mapping[str, float]) -> Coefficients:
        shares = self.shares(params)
        return Coefficients(**{COEFFICIENT[d]: self.target ** (shares[d] / EXPONENT[d])
                               for d in DIMENSIONS}, target=self.target)

    def suggest(self, trial: optuna.Trial) -> Coefficients:
        return self.coefficients({p: trial.suggest_float(p, 0.0, 1.0) for p in self.params})

    def params_of(self, coeffs: Coefficients) -> dict[str, float]:
        """The box point of a triple's direction (its shares normalised to sum to 1)."""
        shares = shares_of(coeffs)
        dims = self.dimensions
        if len(dims) == 1:
            return {}
        if len(dims) == 2:
            total = shares[dims[0]] + shares[dims[1]]
            return {"share_u": shares[dims[0]] / total if total else 0.5}
        rest = shares[dims[1]] + shares[dims[2]]
        return {"share_u": min(1.0, max(0.0, 1.0 - rest**2)),
                "share_v": shares[dims[1]] / rest if rest else 0.5}

    def grid(self, step: float = 0.1) -> list[dict[str, float]]:
        """The lattice of shares in steps of `step` (1 / step must be a whole number n):
        (n + 1)(n + 2) / 2 directions with three dimensions, the corners (single-dimension
        controls) among them; at step 0.1 or 0.05 it holds (0.3, 0.3, 0.4), the lattice point
        nearest the paper's direction (0.280, 0.292, 0.428)."""
        n = self.steps(step)
        points = []
        for parts in itertools.product(range(n + 1), repeat=len(self.dimensions)):
            if sum(parts) == n:
                coeffs = Coefficients(**{
                    COEFFICIENT[d]: self.target ** (k / n / EXPONENT[d])
                    for d, k in zip(self.dimensions, parts, strict=True)}, target=self.target)
                points.append(self.params_of(coeffs))
        return points

    @staticmethod
    def steps(step: float) -> int:
        """How many lattice steps make a share of 1, or a one-line error."""
        n = round(1 / step) if step > 0 else 0
        if n < 1 or abs(n * step - 1) > 1e-9:
            raise UserError(f"grid_step must divide 1 (0.1, 0.05, ...), got {step}")
        return n

    def design(self, n: int, seed: int) -> list[dict[str, float]]:
        """`n` directions of a scrambled Sobol sequence over the box (uniform on the simplex
        through the map), deterministic for a seed."""
        if not self.params or n <= 0:
            return []
        from scipy.stats import qmc

        sobol = qmc.Sobol(d=len(self.params), scramble=True, seed=seed)
        rows = sobol.random_base2(math.ceil(math.log2(n)))[:n]  # a power of 2 keeps its balance
        return [{p: float(v) for p, v in zip(self.params, row, strict=True)} for row in rows]

    def controls(self) -> list[tuple[str, Coefficients]]:
        return Manifold(self.target, self.dimensions).controls()


def shares_of(coeffs: Coefficients) -> dict[str, float]:
    """The direction of a triple: each dimension's share of its log-cost, summing to 1 (the
    paper's (1.2, 1.1, 1.15) is (0.280, 0.292, 0.428))."""
    logs = {d: EXPONENT[d] * math.log(getattr(coeffs, COEFFICIENT[d])) for d in DIMENSIONS}
    total = sum(logs.values())
    if total <= 0:
        raise UserError(f"{coeffs.as_tuple()} does not grow: no direction")
    return {d: v / total for d, v in logs.items()}


def paper_reference(target: float) -> Coefficients:
    """The paper's (1.2, 1.1, 1.15): off the exact manifold by -4% at target 2."""
    return Coefficients(*PAPER.as_tuple(), target=target)
