r"""Experiment 5 (follow-up): mnist_longtail_top1.py with inverse-frequency sampling in every
trial, the remedy that lifted the worst class from 0 to 0.61 recall at 10:1 (remedies table);
without it worst-class recall is 0 for every trial and cannot rank them.
Scored by val_top1.
Expected cost: about 5 minutes on a 2-core CPU. Command:
    effsearch search experiments/mnist_longtail_sampled_top1.py \
        --workdir experiments/results/mnist5k --workers 2
"""

from common import MNIST, longtail_search


def get_config():
    return longtail_search("mnist-longtail-sampled-top1", "val_top1", MNIST,
                           remedy="inverse-sampling")
