r"""Experiment 5: the MNIST coefficient search on a 10:1 long-tailed train split (360 to 36
images per class), scored by val_top1; compare with mnist_longtail_worst.py. Validation stays
balanced. Expected cost: about 6 minutes on a 2-core CPU. Command:
    effsearch search experiments/mnist_longtail_top1.py \
        --workdir experiments/results/mnist5k --workers 2
"""

from common import MNIST, longtail_search


def get_config():
    return longtail_search("mnist-longtail-top1", "val_top1", MNIST)
