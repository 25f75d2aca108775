r"""Experiment 1: the coefficient search (paper step 2) on digits, CPU version.

Purpose: find (alpha, beta, gamma) at phi = 1, target 2, for the 3-stage B0-style baseline,
two objectives (validation top-1, realized MACs). Expected cost: about 8 minutes on a 2-core
CPU with 2 workers. Command:
    effsearch search experiments/digits_coefficients.py \
        --workdir experiments/results/digits --workers 2
"""

from common import coefficient_search


def get_config():
    return coefficient_search("digits-coefficients")
