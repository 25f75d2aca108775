r"""Experiment 7b (session 5): the paper's step 2 on the baseline experiment 7a found.

Purpose: the direction search of `mnist_directions.py` (same proxy, halving, matched 2x MACs)
on the searched baseline instead of the hand-picked one, with a smaller ladder (4x, the best
direction and the references, 2 seeds) to fit the CPU session. Expected cost: about 25
minutes on a 2-core CPU. Command (after experiment 7a's export):
    effsearch search experiments/mnist_baseline_directions.py \
        --workdir experiments/results/mnist5k
"""

import dataclasses
from pathlib import Path

from common import MNIST, direction_search

ARCH = str(Path(__file__).parent / "results" / "mnist5k" / "mnist-baseline.arch.json")


def get_config():
    config = direction_search("mnist-baseline-directions", MNIST, trials=12, ladder=(4.0,))
    return dataclasses.replace(config, ladder_top=1, ladder_seeds=2, search=dataclasses.replace(
        config.search, baseline=ARCH))
