"""The paper's step 2: (alpha, beta, gamma) for a fixed baseline, compared at a matched cost."""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import space
from search.kinds.base import FACTOR, LATTICE, Candidate, Design, SearchKind
from search.manifold import DIMENSIONS, Manifold, Simplex, paper_reference, shares_of
from space import Coefficients, UserError
from space.family import MATCHABLE, match_phi

if TYPE_CHECKING:
    import optuna

    from search.records import TrialRow

REFERENCES = ("paper", "controls")
PARAMETERIZATIONS = ("shares", "coefficients")


@dataclasses.dataclass(frozen=True)
class CoefficientSearch(SearchKind):
    """Scaling directions (alpha, beta, gamma) on alpha * beta^2 * gamma^2 = target for one
    baseline, each scored at a matched realized cost.

    A triple on the constraint says how to split the log-cost among depth, width and
    resolution; how far to go is phi. So the search samples directions (shares of the
    log-cost, `search.manifold.Simplex`: every proposal feasible), and trains each at the phi
    whose *rounded* network costs `target^phi` times the baseline (matched on `match`), so
    trials differ in how they spend a cost, not in rounding accidents of how much they spend.

    Attributes:
        baseline: a named model, an arch string or an arch file (`effsearch export` of a
            baseline study); the proxy config's width/depth/resolution apply to it first.
        phi: with `match`, the cost factor is target^phi (phi 1, target 2: every trial costs
            2x the baseline) and each direction's own phi is found; without, every direction
            is trained at this phi, whatever its rounding makes it cost.
        target: alpha * beta^2 * gamma^2 (2: one unit of phi doubles the ideal cost).
        dimensions: the dimensions allowed to grow; one name gives a single-dimension control
            (e.g. ("depth",): alpha = target, beta = gamma = 1).
        parameterization: "shares" (directions on the simplex) or "coefficients" (two
            coefficients sampled on a box, the third solved, points below 1 rejected: the
            pre-shares space, kept for old studies and the paper's coefficient grid).
        match: the realized cost each trial is matched on ("macs", "params", "activations"),
            or None to train every direction at `phi` (the paper's protocol at phi = 1).
        tolerance: a direction whose closest rounded network is further than this (relative)
            from the cost factor is recorded as rejected, untrained, with the reason.
        snap: shares below this count as 0 (`Simplex.snap`), so that samplers reach the
            directions that leave a dimension unscaled; the grid's lattice points are exact.
        grid_step: lattice step of the "grid" sampler (shares: must divide 1; coefficients:
            the step of beta and gamma).
        references: fixed points trained first and marked in plots: "paper" (1.2, 1.1, 1.15)
            and "controls" (depth-, width-, resolution-only at the same target).
        resolution_multiple: scaled resolutions round to this (proxies at 16-32 px need 2).
        channel_divisor: scaled channels round to this multiple; the official 8 makes any
            beta below ~1.25 a no-op on a 16-32 channel proxy baseline, so use 2 there.
        factors: cost factors as a fidelity (`search.factor_rungs`), e.g. (2, 4, 8): every
            direction is first trained at the lowest, which must be the search's own factor
            target^phi (so phi and target say where the search starts), and the best
            1/factor_eta of those completed at each factor are trained again, from scratch,
            at the next one. Empty: one factor, target^phi. Needs `match`.
        factor_eta: keep the best max(1, n // factor_eta) of the n directions completed at a
            factor for the next one.
    """

    name: ClassVar[str] = "coefficients"
    columns: ClassVar[tuple[str, ...]] = ("alpha", "beta", "gamma", "phi")
    supports_grid: ClassVar[bool] = True

    baseline: str = "efficientnet-b0"
    phi: float = 1.0
    target: float = 2.0
    dimensions: tuple[str, ...] = DIMENSIONS
    parameterization: str = "shares"
    match: str | None = "macs"
    tolerance: float = 0.05
    snap: float = 0.1
    grid_step: float = 0.1
    references: tuple[str, ...] = REFERENCES
    resolution_multiple: int = space.PROXY_RESOLUTION_MULTIPLE
    channel_divisor: int = space.DEFAULT_CHANNEL_DIVISOR
    factors: tuple[float, ...] = ()
    factor_eta: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        try:
            object.__setattr__(self, "factors", tuple(float(f) for f in self.factors))
        except (TypeError, ValueError):
            raise UserError(f"factors must be numbers, e.g. (2, 4, 8), got "
                            f"{self.factors!r}") from None
        object.__setattr__(self, "references", tuple(self.references))
        if self.parameterization not in PARAMETERIZATIONS:
            raise UserError(f"parameterization must be one of {', '.join(PARAMETERIZATIONS)}, "
                            f"got {self.parameterization!r}")
        self.directions  # validates target and dimensions  # noqa: B018
        if self.parameterization == "shares":
            Simplex.steps(self.grid_step)  # validates the grid step
        if not (math.isfinite(self.phi) and self.phi > 0):
            raise UserError(f"phi must be > 0, got {self.phi}")
        if self.match is not None and self.match not in MATCHABLE:
            raise UserError(f"match must be one of {', '.join(MATCHABLE)} or None, got "
                            f"{self.match!r}")
        if not 0 < self.tolerance < 1:
            raise UserError(f"tolerance must be in (0, 1), got {self.tolerance}")
        for ref in self.references:
            if ref not in REFERENCES:
                raise UserError(f"references must be among {', '.join(REFERENCES)}; got "
                                f"{ref!r}")
        if self.resolution_multiple < 1 or self.channel_divisor < 1:
            raise UserError("resolution_multiple and channel_divisor must be >= 1")
        self._check_factors()

    def _check_factors(self) -> None:
        if not self.factors:
            return
        factors = self.factors
        if len(factors) < 2 or not all(math.isfinite(f) and f > 1 for f in factors) or any(
                b <= a for a, b in itertools.pairwise(factors)):
            raise UserError(f"factors must be two or more increasing cost factors > 1, e.g. "
                            f"(2, 4, 8), got {factors}")
        if not math.isclose(factors[0], self.growth, rel_tol=1e-9):
            phi = math.log(factors[0]) / math.log(self.target)
            raise UserError(f"factors start where the search trains, target^phi = "
                            f"{self.growth:g}x, got {factors[0]:g}x first: set phi={phi:g} "
                            f"or start factors at {self.growth:g}")
        if self.match is None:
            raise UserError("factors compare directions at matched costs: set match "
                            "(e.g. 'macs')")
        if self.parameterization != "shares":
            raise UserError("factors need directions on the share simplex "
                            "(parameterization='shares')")
        if not isinstance(self.factor_eta, int) or self.factor_eta < 2:
            raise UserError(f"factor_eta must be an integer >= 2, got {self.factor_eta!r}")

    @property
    def directions(self) -> Simplex | Manifold:
        """What the sampler moves on."""
        if self.parameterization == "shares":
            return Simplex(self.target, self.dimensions, self.snap)
        return Manifold(self.target, self.dimensions)

    @property
    def start(self) -> str:
        return self.baseline

    @property
    def growth(self) -> float:
        """The cost ratio of a candidate to the baseline: target^phi (matched, or ideal)."""
        return self.target**self.phi

    @property
    def default_objective(self) -> str:
        # At matched cost the cost objective is constant up to the tolerance: the paper's
        # step 2 is accuracy at equal cost.
        return "metric" if self.match else "pareto"

    def validate_objective(self, kind: str, cost: str, target: float | None) -> None:
        if self.match and kind != "metric" and cost == self.match:
            raise UserError(
                f"every trial of this search costs {self.growth:g}x the baseline's {cost} "
                f"(match={self.match!r}), so a {kind} objective on {cost} would rank rounding "
                f"noise: use Objective(kind='metric'), or a cost that varies at equal "
                f"{self.match} (latency, params, activations)")

    def design(self, *, sampler: str, startup_trials: int, seed: int) -> Design:
        directions = self.directions
        out: Design = []
        if "paper" in self.references and len(directions.dimensions) == 3:
            paper = paper_reference(self.target)
            out.append((directions.params_of(paper),
                        {"reference": "paper", "coefficients": list(paper.as_tuple())}))
        if "controls" in self.references and len(directions.dimensions) > 1:
            for label, coeffs in directions.controls():
                out.append((directions.params_of(coeffs), {"reference": label}))
        if sampler == "grid":  # lattice points are exact: `propose` does not snap them
            return out + [(p, {LATTICE: self.grid_step}) for p in directions.grid(self.grid_step)]
        return out + [(p, {}) for p in directions.design(startup_trials, seed)]

    def propose(self, trial: optuna.Trial, baseline: space.ArchSpec) -> Candidate | str:
        fixed = trial.user_attrs.get("coefficients")  # the paper's triple, off the manifold
        directions = self.directions
        if LATTICE in trial.user_attrs and isinstance(directions, Simplex):
            directions = dataclasses.replace(directions, snap=0.0)
        coeffs = directions.suggest(trial)
        if isinstance(coeffs, str):
            return coeffs
        if fixed:
            alpha, beta, gamma = fixed
            coeffs = Coefficients(alpha, beta, gamma, target=self.target)
        attrs: dict[str, Any] = {
            "alpha": coeffs.alpha, "beta": coeffs.beta, "gamma": coeffs.gamma,
            "product": coeffs.product,
            **{f"{d}_share": v for d, v in shares_of(coeffs).items()}}
        rounding = {"resolution_multiple": self.resolution_multiple,
                    "channel_divisor": self.channel_divisor}
        base = space.cost(baseline)
        growth = self.growth
        if self.factors:  # a direction queued at a larger factor trains there
            growth = float(trial.user_attrs.get(FACTOR, growth))
            attrs[FACTOR] = growth
        if self.match:
            spec, phi, ratio = match_phi(baseline, coeffs, growth, cost_key=self.match,
                                         **rounding)
            error = ratio / growth - 1
            attrs.update(phi=phi, match_ratio=ratio, match_error=error)
            if abs(error) > self.tolerance:
                return Candidate(spec, attrs, rejected=(
                    f"its closest rounded network costs {ratio:.3g}x the baseline's "
                    f"{self.match}, {error:+.1%} from {growth:g}x (tolerance "
                    f"{self.tolerance:.0%})"))
        else:
            phi = self.phi
            spec = space.scale(baseline, coeffs, phi, **rounding)
            attrs["phi"] = phi
        ratio = space.cost(spec).macs / base.macs
        attrs.update(ideal_ratio=growth, macs_ratio=ratio, realized_vs_ideal=ratio / growth)
        return Candidate(spec, attrs)

    def cost_target(self, cost: str, baseline_cost: float) -> float:
        return baseline_cost * self.growth

    def iso_costs(self, baseline_macs: float) -> list[tuple[str, float]]:
        return [("baseline", baseline_macs),
                (f"target {self.growth:g}x baseline", baseline_macs * self.growth)]

    def describe(self, row: TrialRow) -> str:
        return (f"alpha={row.alpha:.4f}, beta={row.beta:.4f}, gamma={row.gamma:.4f}"
                + (f" (phi {row.phi:.3f})" if row.phi is not None else ""))

    def coefficients(self, row: TrialRow) -> Coefficients:
        """A trial's coefficients with the family it was trained in: the baseline as trained
        (the proxy's data) and this search's rounding, so `space.scale(None, c, row.phi)`
        rebuilds the trial's network exactly."""
        return Coefficients(*row.triple, target=self.target,
                            baseline=row.baseline_arch,
                            resolution_multiple=self.resolution_multiple,
                            channel_divisor=self.channel_divisor)

    def export(self, row: TrialRow, path: Path, provenance: Mapping[str, Any]) -> Path:
        return space.save_coefficients(self.coefficients(row), path, provenance)

    def provenance(self, row: TrialRow, config: Mapping[str, Any]) -> dict[str, Any]:
        proxy = config["proxy"]
        return {"baseline": self.baseline, "baseline_arch": row.baseline_arch,
                "phi": row.phi if row.phi is not None else self.phi, "target": self.target,
                "matched": self.match,
                "cost_factor": row.factor if row.factor is not None else self.growth,
                **({"factors": list(self.factors)} if self.factors else {}),
                "baseline_width": proxy["width"], "baseline_depth": proxy["depth"],
                "baseline_resolution": proxy["resolution"],
                "realized_vs_ideal_macs": row.realized_vs_ideal}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> CoefficientSearch:
        # Studies made before these fields existed: channels rounded to the official 8,
        # coefficients sampled on a box, every direction trained at the study's phi, shares
        # taken as sampled.
        old = {"channel_divisor": 8, "parameterization": "coefficients", "match": None,
               "grid_step": 0.05, "snap": 0.0}
        return super().from_json({**old, **record})  # type: ignore[return-value]
