r"""Experiment 1: the coefficient search (paper step 2) on MNIST 5k, CPU version.

Purpose: find (alpha, beta, gamma) at phi = 1, target 2, for the 3-stage B0-style baseline at
14 px (half of MNIST's 28), channels rounded to 2; two objectives (validation top-1, realized
MACs); successive halving 3 -> 9 epochs. Expected cost: about 10 minutes on a 2-core CPU with
2 workers. Command:
    effsearch search experiments/mnist_coefficients.py \
        --workdir experiments/results/mnist5k --workers 2
"""

from common import MNIST, coefficient_search


def get_config():
    return coefficient_search("mnist-coefficients", MNIST)
