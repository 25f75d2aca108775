"""Quickstart: a real compound-coefficient search on scikit-learn's digits, on a laptop CPU.

Purpose: the paper's step 2 at toy scale. The baseline is B0's first three stages (5 MBConv
blocks with SE, 16 to 32 channels; full B0 at width 0.25 stays near chance on digits in a few
epochs), trained on the 1,797 real 8x8 digit images upsampled to 16 px, no flips. TPE samples
scaling directions (how alpha * beta^2 * gamma^2 = 2 splits among depth, width and
resolution) after the paper's direction, the three single-dimension controls and a seeded
Sobol design; each direction is trained at the phi whose rounded network costs 4x the
baseline's MACs, within 10% (at 2x, 16-32 channels and one- or two-block stages round so
coarsely that the paper's direction lands 19% off and 3 in 4 directions miss 5%; at 4x it is
8% off), scored on validation top-1, with asynchronous successive halving over epochs
1 -> 2 -> 4. Channels round to 2, not the official 8.

Expected cost: about 2.5 minutes on a 2-core CPU (155 s in session 8; each trial compiles a new
network, which is most of its time); seconds per trial on a GPU.

Command (also `make run`):
    effsearch search experiments/quickstart.py && effsearch front quickstart
"""

import space
from search.config import CoefficientSearch, SearchConfig
from search.halving import Halving
from trainers.config import ProxyConfig

BASELINE = space.PROXY_BASELINE  # B0's first three stages at proxy width


def get_config() -> SearchConfig:
    return SearchConfig(
        name="quickstart",
        search=CoefficientSearch(baseline=BASELINE, phi=2.0, target=2.0, tolerance=0.1,
                                 resolution_multiple=2, channel_divisor=2),
        proxy=ProxyConfig(dataset="digits", resolution=16, epochs=4, batch_size=64,
                          flip=False),
        sampler="tpe",
        trials=10,
        startup_trials=1,
        halving=Halving(min_epochs=1, eta=2),
    )
