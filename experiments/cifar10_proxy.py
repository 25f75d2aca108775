r"""The CIFAR-10 proxy candidates of the screening (issue 23, part 2), one per $CIFAR_PROXY.

Purpose: choose the CIFAR-10 proxy by measurement. Each candidate is a coefficient search at
matched 2x MACs (tolerance 5%) whose proxy `effsearch reliability` trains on about 12 distinct
lattice networks with 2 seeds; the chosen one must reach a test-retest Spearman of 0.8 with
a 2x training of at most 3 minutes on the 2-core CPU. Every knob is a `ProxyConfig` field:
baseline and input size, train subset (`fraction` of the 45,000 train images left after the
5,000 validation images), epochs, batch, augmentation.

    EFFSEARCH_DATA_DIR=../shared/data CIFAR_PROXY=s4w25-20px-9k-e5 \
        effsearch reliability experiments/cifar10_proxy.py --networks 12 \
        --workdir experiments/results/cifar10

Expected cost: 24 trainings of 2-3 minutes, about an hour a candidate on the 2-core CPU.
"""

import dataclasses
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import BASELINES

from search.config import CoefficientSearch, SearchConfig
from trainers.config import ProxyConfig


@dataclasses.dataclass(frozen=True)
class Candidate:
    baseline: str  # a name of cifar10_lattice.BASELINES
    resolution: int
    fraction: float  # of the train split left after validation (45,000 images)
    epochs: int
    batch_size: int = 128
    channel_divisor: int = 2


CANDIDATES = {
    # B0's first four stages at a quarter width, 20 px: 30 distinct networks at 2x (E.1).
    "s4w25-20px-9k-e5": Candidate("b0-stages4-w0.25", 20, 0.2, 5),
    "s4w25-20px-18k-e4": Candidate("b0-stages4-w0.25", 20, 0.4, 4),
    # Three eighths of B0's width: 33 networks at 2x, twice the MACs.
    "s4w375-20px-9k-e5": Candidate("b0-stages4-w0.375", 20, 0.2, 5),
}


def get_config() -> SearchConfig:
    name = os.environ.get("CIFAR_PROXY", "s4w25-20px-9k-e5")
    c = CANDIDATES[name]
    return SearchConfig(
        name=f"cifar10-proxy-{name}",
        search=CoefficientSearch(baseline=BASELINES[c.baseline], phi=1.0, tolerance=0.05,
                                 resolution_multiple=1, channel_divisor=c.channel_divisor),
        proxy=ProxyConfig(dataset="cifar10", resolution=c.resolution, fraction=c.fraction,
                          epochs=c.epochs, batch_size=c.batch_size, val_fraction=0.1),
        sampler="grid", trials=None, halving=None)
