"""Quickstart: a real compound-coefficient search on scikit-learn's digits, on a laptop CPU.

Purpose: the paper's step 2 at toy scale. The baseline is B0's first three stages (5 MBConv
blocks with SE, 16 to 32 channels; full B0 at width 0.25 stays near chance on digits in a few
epochs), trained on the 1,797 real 8x8 digit images upsampled to 16 px, no flips;
(alpha, beta, gamma) are sampled exactly on alpha * beta^2 * gamma^2 = 2 by TPE after the
paper's triple, the three single-dimension controls and a seeded Sobol design; two objectives
(validation top-1 up, realized MACs down) with successive halving over epochs 1 -> 2 -> 4.

Expected cost: about 4 minutes on a 2-core CPU (each trial compiles a new network, which is
most of its time); seconds per trial on a GPU.

Command (also `make run`):
    effsearch search experiments/quickstart.py && effsearch front quickstart
"""

import space
from search.config import CoefficientSearch, Objective, SearchConfig
from search.halving import Halving
from trainers.config import ProxyConfig

BASELINE = space.PROXY_BASELINE  # B0's first three stages at proxy width


def get_config() -> SearchConfig:
    return SearchConfig(
        name="quickstart",
        search=CoefficientSearch(baseline=BASELINE, phi=1.0, target=2.0,
                                 resolution_multiple=2),
        proxy=ProxyConfig(dataset="digits", resolution=16, epochs=4, batch_size=64,
                          flip=False),
        objective=Objective(kind="pareto", metric="val_top1", cost="macs"),
        sampler="tpe",
        trials=8,
        startup_trials=2,
        halving=Halving(min_epochs=1, eta=2),
    )
