r"""Experiment 7a (session 5): the paper's step 1 on MNIST 5k, a baseline search.

Purpose: search a B0-style baseline in the MnasNet-style space around the hand-picked 3-stage
baseline (kernels 3/5, expansions 1/3/6, +-1 block, SE on/off, widths 0.75-1.25 a stage,
channels rounded to 2), scored by MnasNet's reward ACC * (MACs / T)^-0.07 with T the
hand-picked baseline's 311,254 MACs at 14 px; candidates over T + 10% are rejected untrained.
Same proxy and halving as the MNIST coefficient searches. Experiment 7b
(`mnist_baseline_directions.py`) scales what this exports. Expected cost: about 10 minutes on
a 2-core CPU. Commands:
    effsearch search experiments/mnist_baseline.py --workdir experiments/results/mnist5k
    effsearch export mnist-baseline --workdir experiments/results/mnist5k \
        -o experiments/results/mnist5k/mnist-baseline.arch.json
"""

from common import BASELINE, MNIST

from search.config import BaselineSearch, Objective, SearchConfig

HAND_PICKED_MACS = 311_254  # BASELINE at 14 px, 10 classes, 1 channel (experiments/README.md)


def get_config():
    return SearchConfig(
        name="mnist-baseline",
        search=BaselineSearch(seed=BASELINE, macs_target=HAND_PICKED_MACS, max_over=0.1,
                              channel_divisor=MNIST.channel_divisor),
        proxy=MNIST.proxy, objective=Objective(kind="reward"), sampler="tpe", trials=12,
        startup_trials=4, halving=MNIST.halving)
