"""The paper's step 1: a B0-style baseline from a MnasNet-style space under a MACs target."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

import space
from search.kinds.base import Candidate, Design, SearchKind
from space import ArchSpec, UserError  # by name: the `space` method shadows the module
from space.baseline_space import BaselineSpace, StageChoices, mnasnet_space

if TYPE_CHECKING:
    import optuna

    from search.records import TrialRow


@dataclasses.dataclass(frozen=True)
class BaselineSearch(SearchKind):
    """A baseline network from the space around a seed, scored under a MACs target.

    Attributes:
        seed: the network the space is built around (named model or arch string); the proxy
            config's width/depth/resolution apply to it first.
        choices: per-stage options (the same for every stage).
        macs_target: T, the MACs target at the proxy's resolution and classes.
        max_over: candidates above T * (1 + max_over) MACs are rejected before training.
        channel_divisor: width options round to this multiple; the official 8 hides them at
            16-32 channels, so use 2 at proxy scale.
    """

    name: ClassVar[str] = "baseline"
    columns: ClassVar[tuple[str, ...]] = ("arch",)

    seed: str = "efficientnet-b0"
    choices: StageChoices = dataclasses.field(default_factory=StageChoices)
    macs_target: float = 4e8
    max_over: float = 0.1
    channel_divisor: int = space.DEFAULT_CHANNEL_DIVISOR

    def __post_init__(self) -> None:
        if not self.macs_target > 0 or self.max_over < 0:
            raise UserError(f"macs_target must be > 0 and max_over >= 0, got "
                            f"{self.macs_target}, {self.max_over}")
        if self.channel_divisor < 1:
            raise UserError(f"channel_divisor must be >= 1, got {self.channel_divisor}")

    @property
    def start(self) -> str:
        return self.seed

    @property
    def limit(self) -> float:
        """Candidates above this many MACs are rejected before training."""
        return self.macs_target * (1 + self.max_over)

    def space(self, seed_spec: ArchSpec) -> BaselineSpace:
        return mnasnet_space(seed_spec, self.choices, channel_divisor=self.channel_divisor)

    def design(self, *, sampler: str, startup_trials: int, seed: int) -> Design:
        # The decisions and their options do not depend on the proxy's dataset or width.
        baseline_space = self.space(space.resolve(self.seed))
        out: Design = []
        seed_values = baseline_space.seed_values()
        if seed_values is not None:
            out.append((seed_values, {"reference": "seed"}))
        rng = np.random.default_rng(seed)
        choices = baseline_space.choices()
        for _ in range(startup_trials):
            out.append(({k: v[rng.integers(len(v))] for k, v in choices.items()}, {}))
        return out

    def prepare(self, baseline: ArchSpec) -> None:
        cheapest = space.cost(self.space(baseline).cheapest()).macs
        if cheapest > self.limit:
            raise UserError(f"infeasible MACs target: the cheapest member of the space has "
                            f"{cheapest:.4g} MACs, over the limit {self.limit:.4g}")

    def propose(self, trial: optuna.Trial, baseline: ArchSpec) -> Candidate | str:
        baseline_space = self.space(baseline)
        values = {name: trial.suggest_categorical(name, options)
                  for name, options in baseline_space.choices().items()}
        spec = baseline_space.build(values)
        macs = space.cost(spec).macs
        if macs > self.limit:
            return (f"{macs:.4g} MACs is over the limit {self.limit:.4g} (target "
                    f"{self.macs_target:.4g})")
        return Candidate(spec, {"macs_ratio": macs / self.macs_target})

    def cost_target(self, cost: str, baseline_cost: float) -> float:
        return self.macs_target if cost == "macs" else baseline_cost

    def iso_costs(self, baseline_macs: float) -> list[tuple[str, float]]:
        return [("MACs target", float(self.macs_target))]

    def describe(self, row: TrialRow) -> str:
        return row.arch

    def export(self, row: TrialRow, path: Path, provenance: Mapping[str, Any]) -> Path:
        return space.save_arch(space.decode(row.arch), path, provenance)

    def validate_objective(self, kind: str, cost: str, target: float | None) -> None:
        if cost == "latency" and kind == "reward" and target is None:
            raise UserError("a latency reward needs objective.target (ms)")

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> BaselineSearch:
        record = dict(record)
        if isinstance(record.get("choices"), Mapping):
            record["choices"] = StageChoices(**record["choices"])
        return super().from_json(record)  # type: ignore[return-value]
