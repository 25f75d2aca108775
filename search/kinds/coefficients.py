"""The paper's step 2: (alpha, beta, gamma) for a fixed baseline, compared at phi (default 1)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import space
from search.kinds.base import Candidate, Design, SearchKind
from search.manifold import COEFFICIENT, DIMENSIONS, Manifold, paper_reference
from space import Coefficients, UserError

if TYPE_CHECKING:
    import optuna

    from search.records import TrialRow

REFERENCES = ("paper", "controls")


@dataclasses.dataclass(frozen=True)
class CoefficientSearch(SearchKind):
    """(alpha, beta, gamma) on alpha * beta^2 * gamma^2 = target for one baseline.

    Two coefficients are sampled and the third is solved (`search/manifold.py`), so every
    candidate lies exactly on the constraint; a point whose solved coefficient would fall
    below 1 is rejected before training.

    Attributes:
        baseline: a named model, an arch string or an arch file (`effsearch export` of a
            baseline study); the proxy config's width/depth/resolution apply to it first.
        phi: the compound coefficient at which candidates are compared.
        target: alpha * beta^2 * gamma^2; 2 doubles the cost per unit phi.
        dimensions: the dimensions allowed to grow; one name gives a single-dimension control
            (e.g. ("depth",): alpha = target, beta = gamma = 1).
        grid_step: lattice step of the "grid" sampler.
        references: fixed points trained first and marked in plots: "paper" (1.2, 1.1, 1.15)
            and "controls" (depth-, width-, resolution-only at the same target).
        resolution_multiple: scaled resolutions round to this (proxies at 16-32 px need 2).
        channel_divisor: scaled channels round to this multiple; the official 8 makes any
            beta below ~1.25 a no-op on a 16-32 channel proxy baseline, so use 2 there.
    """

    name: ClassVar[str] = "coefficients"
    columns: ClassVar[tuple[str, ...]] = ("alpha", "beta", "gamma")
    supports_grid: ClassVar[bool] = True

    baseline: str = "efficientnet-b0"
    phi: float = 1.0
    target: float = 2.0
    dimensions: tuple[str, ...] = DIMENSIONS
    grid_step: float = 0.05
    references: tuple[str, ...] = REFERENCES
    resolution_multiple: int = space.PROXY_RESOLUTION_MULTIPLE
    channel_divisor: int = space.DEFAULT_CHANNEL_DIVISOR

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        object.__setattr__(self, "references", tuple(self.references))
        self.manifold  # validates target and dimensions  # noqa: B018
        if not self.phi > 0:
            raise UserError(f"phi must be > 0, got {self.phi}")
        for ref in self.references:
            if ref not in REFERENCES:
                raise UserError(f"references must be among {', '.join(REFERENCES)}; got "
                                f"{ref!r}")
        if self.resolution_multiple < 1 or self.channel_divisor < 1:
            raise UserError("resolution_multiple and channel_divisor must be >= 1")

    @property
    def manifold(self) -> Manifold:
        return Manifold(self.target, self.dimensions)

    @property
    def start(self) -> str:
        return self.baseline

    @property
    def growth(self) -> float:
        """The ideal cost ratio of a candidate to the baseline: target^phi."""
        return self.target**self.phi

    def design(self, *, sampler: str, startup_trials: int, seed: int) -> Design:
        manifold = self.manifold
        out: Design = []
        if "paper" in self.references and len(manifold.dimensions) == 3:
            paper = paper_reference(self.target)
            out.append((manifold.sampled_values(paper),
                        {"reference": "paper", "coefficients": list(paper.as_tuple())}))
        if "controls" in self.references and len(manifold.dimensions) > 1:
            for label, coeffs in manifold.controls():
                out.append((manifold.sampled_values(coeffs), {"reference": label}))
        points = (manifold.grid(self.grid_step) if sampler == "grid"
                  else manifold.design(startup_trials, seed))
        return out + [(p, {}) for p in points]

    def propose(self, trial: optuna.Trial, baseline: space.ArchSpec) -> Candidate | str:
        manifold = self.manifold
        sampled = {COEFFICIENT[d]: trial.suggest_float(COEFFICIENT[d], 1.0, manifold.upper(d))
                   for d in manifold.sampled}
        fixed = trial.user_attrs.get("coefficients")  # the paper's triple, off the manifold
        coeffs = Coefficients(*fixed, target=self.target) if fixed else manifold.solve(sampled)
        if coeffs is None:
            return (f"{COEFFICIENT[manifold.solved]} would be < 1 for {sampled}: off the "
                    f"feasible part of the manifold")
        spec = space.scale(baseline, coeffs, self.phi,
                           resolution_multiple=self.resolution_multiple,
                           channel_divisor=self.channel_divisor)
        ratio = space.cost(spec).macs / space.cost(baseline).macs
        return Candidate(spec, {
            "alpha": coeffs.alpha, "beta": coeffs.beta, "gamma": coeffs.gamma,
            "product": coeffs.product, "phi": self.phi, "ideal_ratio": self.growth,
            "macs_ratio": ratio, "realized_vs_ideal": ratio / self.growth})

    def cost_target(self, cost: str, baseline_cost: float) -> float:
        return baseline_cost * self.growth

    def iso_costs(self, baseline_macs: float) -> list[tuple[str, float]]:
        return [("baseline", baseline_macs),
                (f"target {self.growth:g}x baseline", baseline_macs * self.growth)]

    def describe(self, row: TrialRow) -> str:
        return f"alpha={row.alpha:.4f}, beta={row.beta:.4f}, gamma={row.gamma:.4f}"

    def coefficients(self, row: TrialRow) -> Coefficients:
        """A trial's coefficients with the family it was trained in: the baseline as trained
        (the proxy's data) and this search's rounding, so `space.scale(None, c, phi)` at this
        search's phi rebuilds the trial's network exactly."""
        return Coefficients(row.alpha, row.beta, row.gamma, target=self.target,
                            baseline=row.baseline_arch,
                            resolution_multiple=self.resolution_multiple,
                            channel_divisor=self.channel_divisor)

    def export(self, row: TrialRow, path: Path, provenance: Mapping[str, Any]) -> Path:
        return space.save_coefficients(self.coefficients(row), path, provenance)

    def provenance(self, row: TrialRow, config: Mapping[str, Any]) -> dict[str, Any]:
        proxy = config["proxy"]
        return {"baseline": self.baseline, "baseline_arch": row.baseline_arch, "phi": self.phi,
                "target": self.target, "baseline_width": proxy["width"],
                "baseline_depth": proxy["depth"], "baseline_resolution": proxy["resolution"],
                "realized_vs_ideal_macs": row.realized_vs_ideal}

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> CoefficientSearch:
        # Studies made before `channel_divisor` existed rounded channels to the official 8.
        return super().from_json({"channel_divisor": 8, **record})  # type: ignore[return-value]
