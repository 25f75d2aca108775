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
import math
import sys
import traceback
from pathlib import Path
from typing import Any, Literal

from search import registry
from search.halving import Halving
from search.kinds import KINDS, BaselineSearch, CoefficientSearch, SearchKind
from space import UserError
from space.baseline_space import StageChoices
from trainers.config import ProxyConfig

# Importable from here as before: configs say `from search.config import CoefficientSearch`.
__all__ = ["BaselineSearch", "CoefficientSearch", "Halving", "Objective", "SearchConfig",
           "StageChoices", "load_config_file", "load_search_config"]


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
        registry.check("objective.kind", self.kind, registry.OBJECTIVES)
        registry.check("objective.metric", self.metric, registry.METRICS)
        registry.check("objective.cost", self.cost, registry.COSTS)
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
    def directions(self) -> tuple[Literal["minimize", "maximize"], ...]:
        return tuple("minimize" if n in registry.COSTS else "maximize" for n in self.names)


DEFAULT_HALVING = Halving()
"""Rungs at 1, 3, 9, ... epochs keeping a third: what the replay benchmark recommends."""


@dataclasses.dataclass(frozen=True)
class SearchConfig:
    """One study.

    Attributes:
        name: the study name (default of `--study`).
        search: the search kind and its settings: a `CoefficientSearch`, a `BaselineSearch`
            (search/kinds/), ...
        proxy: the proxy training of every trial (dataset, epochs, resolution, ...).
        objective: what trials are scored on; None: the search kind's default (a
            coefficient search matched on cost: the metric alone; otherwise a Pareto front of
            the metric and MACs).
        sampler: a name of `search.registry.SAMPLERS`: "grid" (kinds with a lattice: every
            point enqueued), "tpe", "nsga2", "gp" (Optuna's GPSampler) or "random".
        trials: distinct networks to train (rejected candidates, duplicates of a network
            already trained and halving's promotions do not count); None: the grid's
            size with the grid sampler.
        startup_trials: seeded design points enqueued up front (Sobol for coefficients,
            random for baselines), so parallel sweeps start reproducibly.
        seed: seeds the sampler and the design.
        halving: successive halving / Hyperband over epochs (any number of objectives);
            None trains every trial to the full budget. The default (rungs at 1, 3, 9, ...
            epochs, keeping a third; it steps aside for a `pruner` and for a proxy of one
            epoch) is what the replay benchmark recommends: on the MNIST direction table
            TPE with it reaches the regret of the 0.05 grid with 28% of the grid's training
            (experiments/README.md part D).
        pruner: an Optuna pruner for single-objective studies (`search.registry.PRUNERS`):
            "median", "sha", "hyperband".
        ladder: cost factors (e.g. (4, 8)) at which `effsearch search` confirms the study's
            `ladder_top` best directions with `ladder_seeds` seeds once the search is done
            (`effsearch validate --factors`; coefficient searches only). A search with
            factor rungs (`CoefficientSearch.factors`) has none: it confirms its
            `ladder_top` best directions at its largest factor with `ladder_seeds` seeds.
        ladder_top: directions the ladder confirms.
        ladder_seeds: seeds per direction and factor.
        noise_seeds: the noise-aware final pick (search/noise_pick.py): after the search,
            every direction whose score lies within the proxy's noise band of the leader
            (1.96 sqrt(2) seed stds) is trained with this many seeds in all (the search's
            training is the first) and the best mean is exported. 1: off (the default; the
            replay benchmark found it helps on CIFAR-10 and hurts on MNIST, experiments/
            README.md part G). With factor rungs it chooses the confirmation's directions.
        noise_promotions: halving's noise-aware promotions (issue 27): at a rung, every
            result within the noise band of the weakest one the rule sends on (1.96 sqrt(2)
            seed stds) goes on too. Off by default (experiments/README.md part G).
        noise_std: the proxy's seed std for those bands; None: the study's `effsearch
            reliability --store` record.
        heartbeat_s: how often a running trial says it is alive.
        grace_s: a running trial silent this long is failed and retried.
        max_retries: retries of a trial whose worker died.
    """

    name: str
    search: SearchKind = dataclasses.field(default_factory=CoefficientSearch)
    proxy: ProxyConfig = dataclasses.field(default_factory=ProxyConfig)
    # Typed as it is after construction: None becomes the kind's default in __post_init__.
    objective: Objective = None  # type: ignore[assignment]
    sampler: str = "tpe"
    trials: int | None = 20
    startup_trials: int = 8
    seed: int = 0
    halving: Halving | None = DEFAULT_HALVING
    pruner: str | None = None
    ladder: tuple[float, ...] = ()
    ladder_top: int = 3
    ladder_seeds: int = 3
    noise_seeds: int = 1
    noise_promotions: bool = False
    noise_std: float | None = None
    heartbeat_s: float = 10.0
    grace_s: float = 120.0
    max_retries: int = 2

    def __post_init__(self) -> None:
        if self.objective is None and isinstance(self.search, SearchKind):
            object.__setattr__(self, "objective", Objective(kind=self.search.default_objective))
        if not isinstance(self.name, str) or not self.name.strip():
            raise UserError("name must be a non-empty study name")
        if not isinstance(self.search, SearchKind):
            raise UserError(f"search must be one of the search kinds ("
                            f"{', '.join(k.__name__ for k in KINDS.values())})")
        if not isinstance(self.proxy, ProxyConfig):
            raise UserError("proxy must be a trainers.config.ProxyConfig")
        registry.check("sampler", self.sampler, registry.SAMPLERS)
        if registry.SAMPLERS[self.sampler].grid and not self.search.supports_grid:
            raise UserError(f"the {self.sampler} sampler needs a search kind with a grid; a "
                            f"{self.search.name} search has none (use tpe, nsga2, gp or random)")
        if self.trials is None and not registry.SAMPLERS[self.sampler].grid:
            raise UserError("trials must be set (only the grid sampler has a natural size)")
        if self.trials is not None and self.trials < 1:
            raise UserError(f"trials must be >= 1, got {self.trials}")
        sampler = registry.SAMPLERS[self.sampler]
        if self.trials is not None and self.trials < sampler.min_budget:
            raise UserError(f"the {self.sampler} sampler needs trials >= {sampler.min_budget} "
                            f"({sampler.budget_note}), got {self.trials}")
        if self.startup_trials < 0 or self.max_retries < 0:
            raise UserError("startup_trials and max_retries must be >= 0")
        if not (0 < self.heartbeat_s < self.grace_s):
            raise UserError("need 0 < heartbeat_s < grace_s")
        if self.halving == DEFAULT_HALVING and (self.pruner is not None
                                                or not self.halving.rungs(self.proxy.epochs)):
            # The default steps aside for a pruner, and for a proxy too short to halve.
            object.__setattr__(self, "halving", None)
        if self.pruner is not None:
            registry.check("pruner", self.pruner, registry.PRUNERS)
            if len(self.objective.names) > 1:
                raise UserError("Optuna's pruners need a single objective; use halving=Halving"
                                "() for a multi-objective study")
            if self.halving is not None:
                raise UserError("choose halving or pruner, not both")
        if self.halving is not None and not self.halving.rungs(self.proxy.epochs):
            raise UserError(f"halving has no rung below the proxy's {self.proxy.epochs} epochs "
                            f"(min_epochs={self.halving.min_epochs})")
        self.search.validate_objective(self.objective.kind, self.objective.cost,
                                       self.objective.target)
        self._check_factors()
        object.__setattr__(self, "ladder", tuple(float(f) for f in self.ladder))
        if self.ladder:
            if not isinstance(self.search, CoefficientSearch):
                raise UserError("ladder confirms coefficient directions; a "
                                f"{self.search.name} search has none")
            if not all(math.isfinite(f) and f >= 1 for f in self.ladder):
                raise UserError(f"ladder factors must be >= 1, got {self.ladder}")
        counts = (self.ladder_top, self.ladder_seeds, self.noise_seeds)
        if not all(isinstance(n, int) and n >= 1 for n in counts):
            raise UserError(f"ladder_top, ladder_seeds and noise_seeds must be integers >= 1, "
                            f"got {counts}")
        if self.noise_std is not None and not self.noise_std > 0:
            raise UserError(f"noise_std must be > 0, got {self.noise_std}")
        if self.noise_promotions:
            if self.halving is None:
                raise UserError("noise_promotions widens halving's promotions: it needs "
                                "halving (not a pruner, and a proxy long enough to halve)")
            if len(self.objective.names) > 1:
                raise UserError("noise_promotions compares one objective; this study has "
                                f"{len(self.objective.names)}: use a metric objective")
        if self.noise_seeds > 1:
            if not isinstance(self.search, CoefficientSearch) or self.search.match is None:
                raise UserError("noise_seeds retrains directions at their matched cost: it "
                                "needs a coefficient search with match set")
            if self.ladder:
                raise UserError("noise_seeds and ladder both retrain with seeds; the ladder "
                                "picks by mean already: choose one")

    def _check_factors(self) -> None:
        """What factor rungs (`CoefficientSearch.factors`) cannot be combined with."""
        factors = getattr(self.search, "factors", ())
        if not factors:
            return
        if self.objective.kind != "metric":
            raise UserError(f"factors rank directions by {self.objective.metric} at each "
                            f"factor, where every trial costs the same: a "
                            f"{self.objective.kind} objective would mix costs across factors "
                            f"(use Objective(kind='metric'))")
        if self.pruner is not None:
            raise UserError("factors decide with their own rungs (and halving inside the "
                            "lowest factor); drop the pruner")
        if self.ladder:
            raise UserError(f"factors replace the ladder: a study with factors {factors} "
                            f"confirms its best directions at {factors[-1]:g}x itself "
                            f"(ladder_top directions, ladder_seeds seeds); drop ladder")

    @property
    def kind(self) -> str:
        """The search kind's name, stored with the study."""
        return self.search.name

    def to_json(self) -> dict[str, Any]:
        record = dataclasses.asdict(self)
        record["kind"] = self.kind
        return record


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
