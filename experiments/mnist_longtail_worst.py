r"""Experiment 5: the MNIST long-tail coefficient search scored by the worst class's validation
recall (on a balanced validation set, balanced accuracy equals top-1, so this is the
objective that can disagree with top-1). Expected cost: about 6 minutes. Command:
    effsearch search experiments/mnist_longtail_worst.py \
        --workdir experiments/results/mnist5k --workers 2
"""

from common import MNIST, longtail_search


def get_config():
    return longtail_search("mnist-longtail-worst", "val_worst_class_recall", MNIST)
