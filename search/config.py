"""Typed, frozen sweep configs: what `get_config()` in an experiments/*.py file returns.

A `SearchConfig` is one study: which search (coefficients or baseline), the proxy each trial
trains, the objective, the sampler, the budget and the multi-fidelity schedule. Every field is
validated on construction, so a typo in a config file fails before any storage is touched.
The whole config is stored as JSON in the study's user attrs, so `front`, `export` and
`validate` need only the storage, not the file.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import traceback
from pathlib import Path
from typing import Any

import space
from search.halving import Halving
from search.manifold import DIMENSIONS, Manifold
from space import UserError
from space.baseline_space import BaselineSpace, StageChoices, mnasnet_space
from trainers.proxy import ProxyConfig

SAMPLERS = ("grid", "tpe", "nsga2", "gp", "random")
OBJECTIVE_KINDS = ("pareto", "reward", "metric")
# Accuracy-like, maximised, all from the validation split; see trainers/metrics.py.
METRICS = ("val_top1", "val_balanced_accuracy", "val_worst_class_recall", "val_macro_f1")
COSTS = ("macs", "params", "latency")  # minimised
PRUNERS = ("median", "sha", "hyperband")


@dataclasses.dataclass(frozen=True)
class Objective:
    """What a trial is scored on.

    Attributes:
        kind: "pareto": two objectives (metric up, cost down), a Pareto front;
            "reward": MnasNet's single value metric * (cost / target)^weight;
            "metric": the metric alone.
        metric: the accuracy measure, from the validation split only.
        cost: "macs" and "params" from the analytic cost model (realized, after rounding);
            "latency" is the forward pass measured on the worker's device (p50, ms).
        weight: the reward exponent w (MnasNet/EfficientNet: -0.07).
        target: T of the reward, in the cost's unit. None: for a coefficient search, the
            baseline's cost times target^phi (latency: measured once per worker); a baseline
            search uses its `macs_target` when the cost is MACs.
        latency_batch: batch size of the latency probe.
    """

    kind: str = "pareto"
    metric: str = "val_top1"
    cost: str = "macs"
    weight: float = -0.07
    target: float | None = None
    latency_batch: int = 1

    def __post_init__(self) -> None:
        _one_of("objective.kind", self.kind, OBJECTIVE_KINDS)
        _one_of("objective.metric", self.metric, METRICS)
        _one_of("objective.cost", self.cost, COSTS)
        if self.target is not None and not self.target > 0:
            raise UserError(f"objective.target must be > 0, got {self.target}")
        if self.latency_batch < 1:
            raise UserError(f"objective.latency_batch must be >= 1, got {self.latency_batch}")

    @property
    def names(self) -> tuple[str, ...]:
        """The study's objective names, in Optuna's order."""
        return {"pareto": (self.metric, self.cost), "reward": ("reward",),
                "metric": (self.metric,)}[self.kind]

    @property
    def directions(self) -> tuple[str, ...]:
        return tuple("minimize" if n in COSTS else "maximize" for n in self.names)


@dataclasses.dataclass(frozen=True)
class CoefficientSearch:
    """The paper's step 2: (alpha, beta, gamma) for a fixed baseline at phi (default 1).

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

    baseline: str = "efficientnet-b0"
    phi: float = 1.0
    target: float = 2.0
    dimensions: tuple[str, ...] = DIMENSIONS
    grid_step: float = 0.05
    references: tuple[str, ...] = ("paper", "controls")
    resolution_multiple: int = 2
    channel_divisor: int = space.DEFAULT_CHANNEL_DIVISOR

    def __post_init__(self) -> None:
        object.__setattr__(self, "dimensions", tuple(self.dimensions))
        object.__setattr__(self, "references", tuple(self.references))
        self.manifold  # validates target and dimensions  # noqa: B018
        if not self.phi > 0:
            raise UserError(f"phi must be > 0, got {self.phi}")
        for ref in self.references:
            _one_of("references", ref, ("paper", "controls"))
        if self.resolution_multiple < 1 or self.channel_divisor < 1:
            raise UserError("resolution_multiple and channel_divisor must be >= 1")

    @property
    def manifold(self) -> Manifold:
        return Manifold(self.target, self.dimensions)


@dataclasses.dataclass(frozen=True)
class BaselineSearch:
    """The paper's step 1: a B0-style baseline from a MnasNet-style space under a MACs target.

    Attributes:
        seed: the network the space is built around (named model or arch string); the proxy
            config's width/depth/resolution apply to it first.
        choices: per-stage options (the same for every stage).
        macs_target: T, the MACs target at the proxy's resolution and classes.
        max_over: candidates above T * (1 + max_over) MACs are rejected before training.
    """

    seed: str = "efficientnet-b0"
    choices: StageChoices = dataclasses.field(default_factory=StageChoices)
    macs_target: float = 4e8
    max_over: float = 0.1

    def __post_init__(self) -> None:
        if not self.macs_target > 0 or self.max_over < 0:
            raise UserError(f"macs_target must be > 0 and max_over >= 0, got "
                            f"{self.macs_target}, {self.max_over}")

    def space(self, seed_spec: space.ArchSpec) -> BaselineSpace:
        return mnasnet_space(seed_spec, self.choices)


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """One study.

    Attributes:
        name: the study name (default of `--study`).
        search: a `CoefficientSearch` or a `BaselineSearch`.
        proxy: the proxy training of every trial (dataset, epochs, resolution, ...).
        objective: what trials are scored on.
        sampler: "grid" (coefficient search only: the lattice, enqueued), "tpe", "nsga2",
            "gp" (Optuna's GPSampler) or "random".
        trials: trained trials to finish (rejected candidates do not count); None: the grid's
            size with the grid sampler.
        startup_trials: seeded design points enqueued up front (Sobol for coefficients,
            random for baselines), so parallel sweeps start reproducibly.
        seed: seeds the sampler and the design.
        halving: successive halving / Hyperband over epochs (any number of objectives).
        pruner: an Optuna pruner for single-objective studies: "median", "sha", "hyperband".
        heartbeat_s: how often a running trial says it is alive.
        grace_s: a running trial silent this long is failed and retried.
        max_retries: retries of a trial whose worker died.
    """

    name: str
    search: CoefficientSearch | BaselineSearch = dataclasses.field(
        default_factory=CoefficientSearch)
    proxy: ProxyConfig = dataclasses.field(default_factory=ProxyConfig)
    objective: Objective = dataclasses.field(default_factory=Objective)
    sampler: str = "tpe"
    trials: int | None = 20
    startup_trials: int = 8
    seed: int = 0
    halving: Halving | None = None
    pruner: str | None = None
    heartbeat_s: float = 10.0
    grace_s: float = 120.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise UserError("name must be a non-empty study name")
        if not isinstance(self.search, CoefficientSearch | BaselineSearch):
            raise UserError("search must be a CoefficientSearch or a BaselineSearch")
        if not isinstance(self.proxy, ProxyConfig):
            raise UserError("proxy must be a trainers.proxy.ProxyConfig")
        _one_of("sampler", self.sampler, SAMPLERS)
        if self.sampler == "grid" and not self.is_coefficient_search:
            raise UserError("the grid sampler is for coefficient searches; use tpe, nsga2, gp "
                            "or random for a baseline search")
        if self.trials is None and self.sampler != "grid":
            raise UserError("trials must be set (only the grid sampler has a natural size)")
        if self.trials is not None and self.trials < 1:
            raise UserError(f"trials must be >= 1, got {self.trials}")
        if self.startup_trials < 0 or self.max_retries < 0:
            raise UserError("startup_trials and max_retries must be >= 0")
        if not (0 < self.heartbeat_s < self.grace_s):
            raise UserError("need 0 < heartbeat_s < grace_s")
        if self.pruner is not None:
            _one_of("pruner", self.pruner, PRUNERS)
            if len(self.objective.names) > 1:
                raise UserError("Optuna's pruners need a single objective; use halving=Halving"
                                "() for a multi-objective study")
            if self.halving is not None:
                raise UserError("choose halving or pruner, not both")
        if self.halving is not None and not self.halving.rungs(self.proxy.epochs):
            raise UserError(f"halving has no rung below the proxy's {self.proxy.epochs} epochs "
                            f"(min_epochs={self.halving.min_epochs})")
        if isinstance(self.search, BaselineSearch) and self.objective.cost == "latency" \
                and self.objective.kind == "reward" and self.objective.target is None:
            raise UserError("a latency reward needs objective.target (ms)")

    @property
    def is_coefficient_search(self) -> bool:
        return isinstance(self.search, CoefficientSearch)

    @property
    def kind(self) -> str:
        return "coefficients" if self.is_coefficient_search else "baseline"

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["kind"] = self.kind
        return record


def _one_of(field: str, value: Any, options: tuple) -> None:
    if value not in options:
        raise UserError(f"{field} must be one of {', '.join(map(str, options))}; got {value!r}")


def dumps(config: SearchConfig) -> str:
    return json.dumps(config.to_json())


def load_config_file(path: str) -> Any:
    """Runs `get_config()` of a Python config file (experiments/*.py).

    Raises:
        UserError: the file is missing or not `.py`, defines no `get_config`, or raises. A
            `UserError` from the config (a bad field) stays one line; any other exception
            keeps the traceback frames of the user's own files (the config and helpers beside
            it) under one line naming the config, and drops effsearch's and Python's frames.
    """
    file = Path(path)
    if not file.is_file():
        raise UserError(f"config file not found: {path}")
    if file.suffix != ".py":
        raise UserError(f"config file {path} must be a Python file (.py) defining get_config()")
    module_spec = importlib.util.spec_from_file_location(f"effsearch_config_{file.stem}", file)
    module = importlib.util.module_from_spec(module_spec)  # type: ignore[arg-type]
    folder = str(file.parent.resolve())
    sys.path.insert(0, folder)  # configs may import helpers beside them
    try:
        module_spec.loader.exec_module(module)  # type: ignore[union-attr]
        get_config = getattr(module, "get_config", None)
        if not callable(get_config):
            raise UserError(f"config file {path} defines no get_config()")
        return get_config()
    except UserError as e:
        raise UserError(f"config file {path}: {e}") from None
    except Exception as e:
        raise _user_traceback(path, folder, e) from None
    finally:
        sys.path.remove(folder)


def _user_traceback(path: str, folder: str, error: BaseException) -> UserError:
    """One line naming the config and the error; as details, the frames in the user's files."""
    frames = [f for f in traceback.extract_tb(error.__traceback__)
              if Path(f.filename).resolve().is_relative_to(folder)]
    if isinstance(error, SyntaxError) and error.filename:  # the frame is the parser's
        frames = []
        detail = f"{error.msg} ({error.filename}, line {error.lineno})"
    else:
        detail = str(error)
    return UserError(f"config file {path} raised {type(error).__name__}: {detail}",
                     details="".join(traceback.format_list(frames)).rstrip("\n"))


def load_search_config(path: str) -> SearchConfig:
    """The `SearchConfig` of a config file, or a one-line error saying what is wrong."""
    config = load_config_file(path)
    if not isinstance(config, SearchConfig):
        raise UserError(f"{path}: get_config() must return a search.config.SearchConfig, got "
                        f"{type(config).__name__}")
    return config
