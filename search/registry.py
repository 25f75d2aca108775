"""What a study can be made of, by name: samplers, pruners, objectives, metrics and costs.

Each entry carries its one-line doc; config validation, error messages and the README's
tables read them from here, so adding a sampler (or a metric) is one entry in one place.
The factories import Optuna when called, so this module stays cheap to import.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from space import UserError

if TYPE_CHECKING:
    import optuna

    from search.config import SearchConfig


@dataclasses.dataclass(frozen=True)
class Sampler:
    """A sampler: its doc, its factory, and what it needs.

    Attributes:
        doc: one line for help texts and the README.
        make: the Optuna sampler for a study's config.
        budget_note: the smallest sensible budget, in words (for the README's table).
        min_budget: fewer trials than this is refused.
        grid: only for kinds that enumerate a grid (the design holds every point).
    """

    doc: str
    make: Callable[[SearchConfig], optuna.samplers.BaseSampler]
    budget_note: str
    min_budget: int = 1
    grid: bool = False


def _random(config: SearchConfig) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.RandomSampler(seed=config.seed)


def _tpe(config: SearchConfig) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.TPESampler(seed=config.seed, n_startup_trials=config.startup_trials)


def nsga2_population(trials: int) -> int:
    """NSGA-II's population for a budget: four generations (at least 4 per generation).

    Optuna's default of 50 means a study of 12-20 trials never leaves its random first
    generation, so the sampler would be random search under another name.
    """
    return max(4, trials // 4)


def _nsga2(config: SearchConfig) -> optuna.samplers.BaseSampler:
    import optuna

    return optuna.samplers.NSGAIISampler(seed=config.seed,
                                         population_size=nsga2_population(config.trials or 0))


def _gp(config: SearchConfig) -> optuna.samplers.BaseSampler:
    if importlib.util.find_spec("torch") is None:
        raise UserError("the gp sampler (Optuna's GPSampler) needs PyTorch: "
                        "pip install 'effsearch[gp]'")
    from search.gp import RejectionAwareGPSampler

    # Only the first trials' parameters are sampled independently, on purpose (the design).
    return RejectionAwareGPSampler(seed=config.seed, n_startup_trials=config.startup_trials,
                                   warn_independent_sampling=False)


SAMPLERS: dict[str, Sampler] = {
    # Every lattice point is enqueued up front, so the sampler itself is never consulted;
    # RandomSampler only answers Optuna's calls for parameters nothing fixed.
    "grid": Sampler("the kind's lattice (coefficients: the share simplex in steps of "
                    "grid_step), every point enqueued", _random,
                    "the lattice's size (trials=None)", grid=True),
    "tpe": Sampler("Optuna's TPE after `startup_trials` seeded points", _tpe,
                   "startup_trials + about 10: below that TPE's model has little to fit"),
    "nsga2": Sampler("Optuna's NSGA-II, population sized to the budget (four generations)",
                     _nsga2, "two generations of the smallest population, 4", min_budget=8),
    "gp": Sampler("Optuna's Gaussian-process sampler, never re-proposing a rejected point "
                  "(needs PyTorch: the gp extra)", _gp,
                  "startup_trials + about 5"),
    "random": Sampler("uniform over the kind's parameters (coefficients: over directions)",
                      _random, "any"),
}


def _pruner(name: str) -> Callable[[SearchConfig], optuna.pruners.BasePruner]:
    def make(config: SearchConfig) -> optuna.pruners.BasePruner:
        import optuna

        if name == "median":
            return optuna.pruners.MedianPruner(n_startup_trials=config.startup_trials)
        if name == "sha":
            return optuna.pruners.SuccessiveHalvingPruner()
        return optuna.pruners.HyperbandPruner(max_resource=config.proxy.epochs)

    return make


PRUNERS: dict[str, tuple[str, Callable[[SearchConfig], optuna.pruners.BasePruner]]] = {
    "median": ("Optuna's MedianPruner after `startup_trials`", _pruner("median")),
    "sha": ("Optuna's SuccessiveHalvingPruner", _pruner("sha")),
    "hyperband": ("Optuna's HyperbandPruner up to the proxy's epochs", _pruner("hyperband")),
}

OBJECTIVES: dict[str, str] = {
    "pareto": "two objectives, metric up and cost down: a Pareto front",
    "reward": "MnasNet's one value, metric * (cost / target)^weight",
    "metric": "the metric alone",
}

# Accuracy-like, maximised, from the validation split only (trainers/metrics.py computes them;
# ProxyResult records them), so a search never selects on the test split.
METRICS: dict[str, str] = {
    "val_top1": "top-1 accuracy",
    "val_balanced_accuracy": "mean per-class recall (top-1 of a balanced split)",
    "val_worst_class_recall": "the lowest per-class recall",
    "val_macro_f1": "unweighted mean of per-class F1",
}

COSTS: dict[str, str] = {  # minimised
    "macs": "multiply-adds of the rounded network (analytic)",
    "params": "parameters of the rounded network (analytic)",
    "activations": "activation elements of a forward pass at batch 1 (analytic)",
    "latency": "forward pass on the worker's device, p50 in ms (measured)",
}


def check(field: str, value: Any, registry: Mapping[str, Any]) -> None:
    """A one-line error unless `value` is registered, listing what is."""
    if value not in registry:
        raise UserError(f"{field} must be one of {', '.join(registry)}; got {value!r}")
