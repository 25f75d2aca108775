"""Shared pieces of the digits experiments (CPU versions; see experiments/README.md)."""

import dataclasses

from search.config import CoefficientSearch, Objective, SearchConfig
from search.halving import Halving
from trainers.proxy import ProxyConfig

# B0's first three stages (SE, expansion 1/4/4): full B0 at width 0.25 stays near chance on
# digits within a few epochs, this one reaches ~0.9.
BASELINE = ("stem16-mb_r1_k3_s1_e1_c16_se0.25-mb_r2_k3_s2_e4_c24_se0.25-"
            "mb_r2_k3_s2_e4_c32_se0.25-head128")
PROXY = ProxyConfig(dataset="digits", resolution=16, epochs=6, batch_size=64, flip=False)


def coefficient_search(name: str, *, objective: Objective | None = None,
                       proxy: ProxyConfig = PROXY, trials: int = 16) -> SearchConfig:
    """TPE on the exact manifold after the paper's triple, the controls and 4 Sobol points;
    successive halving 2 -> 6 epochs."""
    return SearchConfig(
        name=name, search=CoefficientSearch(baseline=BASELINE, resolution_multiple=2),
        proxy=proxy, objective=objective or Objective(), sampler="tpe", trials=trials,
        startup_trials=4, halving=Halving(min_epochs=2, eta=3))


def longtail_search(name: str, metric: str) -> SearchConfig:
    """The coefficient search on a 10:1 long-tailed train split, scored by `metric`."""
    return coefficient_search(name, objective=Objective(metric=metric),
                              proxy=dataclasses.replace(PROXY, imbalance=10), trials=12)
