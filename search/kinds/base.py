"""What every kind of search provides. The controller, the records and the commands use only
this interface, so a new kind (e.g. a joint recipe-and-scaling search) is one new subclass,
registered in `search.kinds.KINDS`."""

from __future__ import annotations

import abc
import dataclasses
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import space

if TYPE_CHECKING:
    import optuna

    from search.records import TrialRow

Design = list[tuple[dict[str, Any], dict[str, Any]]]
"""Trials enqueued up front: (Optuna params, user attrs such as {"reference": "paper"})."""
LATTICE = "lattice"
"""User attr of a grid point (its step): the kind keeps its shares exact; a retry keeps it."""
FACTOR = "factor"
"""User attr of the cost factor a trial trains at (a search with factor rungs,
`search.factor_rungs`); set when it is queued at a larger factor, and a retry keeps it."""


@dataclasses.dataclass(frozen=True)
class Candidate:
    """One trial's architecture and what is known of it before training.

    Attributes:
        spec: the network to train.
        attrs: recorded as the trial's user attrs (coefficients, cost ratios, ...).
        rejected: why it is recorded untrained (e.g. no rounded network within the cost
            tolerance), or None to train it.
    """

    spec: space.ArchSpec
    attrs: dict[str, Any]
    rejected: str | None = None


class SearchKind(abc.ABC):
    """A kind of search: a frozen dataclass of its settings that also knows its trials.

    Subclasses are frozen dataclasses; their fields are the kind's settings, stored as JSON in
    the study, and `from_json` rebuilds them from there for the commands that only read.
    """

    name: ClassVar[str]
    """Stored as the study's "kind" and shown in titles."""
    columns: ClassVar[tuple[str, ...]]
    """The `TrialRow` fields that tell this kind's trials apart in tables (after "trial")."""
    supports_grid: ClassVar[bool] = False
    """Whether `design` can enumerate a grid (the "grid" sampler)."""
    __dataclass_fields__: ClassVar[dict[str, dataclasses.Field[Any]]]
    """Declared for type checkers: every kind is a dataclass (`dataclasses.asdict` takes it)."""

    @property
    @abc.abstractmethod
    def start(self) -> str:
        """The network the search starts from (named model, arch string or arch file)."""

    @property
    def default_objective(self) -> str:
        """The objective kind of a config that names none ("pareto", "reward", "metric")."""
        return "pareto"

    @abc.abstractmethod
    def design(self, *, sampler: str, startup_trials: int, seed: int) -> Design:
        """The trials enqueued when the study is created: references, then seeded points."""

    def prepare(self, baseline: space.ArchSpec) -> None:  # noqa: B027 (optional hook)
        """Refuses, before any training, a search that cannot succeed on this baseline.

        Args:
            baseline: `start` adapted to the proxy's data (resolution, classes, channels).

        Raises:
            UserError: naming why (e.g. a MACs target no member of the space meets).
        """

    @abc.abstractmethod
    def propose(self, trial: optuna.Trial, baseline: space.ArchSpec) -> Candidate | str:
        """The trial's network from its sampled parameters, or why it is rejected untrained."""

    @abc.abstractmethod
    def cost_target(self, cost: str, baseline_cost: float) -> float:
        """T of MnasNet's reward in the cost's unit, given the baseline's cost."""

    def iso_costs(self, baseline_macs: float) -> list[tuple[str, float]]:
        """Labelled MACs values drawn as dashed lines on the front's figure."""
        return [("baseline", baseline_macs)]

    @abc.abstractmethod
    def describe(self, row: TrialRow) -> str:
        """A few words naming a trial's result, e.g. "alpha=1.2000, beta=...", or its arch."""

    @abc.abstractmethod
    def export(self, row: TrialRow, path: Path, provenance: Mapping[str, Any]) -> Path:
        """Writes a trial's result for reuse (coefficients file, arch file, ...)."""

    def provenance(self, row: TrialRow, config: Mapping[str, Any]) -> dict[str, Any]:
        """What this kind adds to an export's provenance, from the stored config."""
        return {}

    def validate_objective(self, kind: str, cost: str, target: float | None) -> None:  # noqa: B027
        """Refuses an objective this kind cannot score (called by `SearchConfig`)."""

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> SearchKind:
        """The kind from a stored config; fields a later effsearch added take their defaults,
        fields it dropped are ignored."""
        names = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        return cls(**{k: v for k, v in record.items() if k in names})

