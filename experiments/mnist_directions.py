r"""Experiment 1b (session 5): the MNIST 5k coefficient search with directions at matched cost.

Purpose: issue 13's rerun of experiment 1 with the new defaults, on the same baseline, data,
proxy (9 epochs), halving rungs (3 -> 9, eta 3) and budget (16 trained directions): scaling
directions sampled on the share simplex, each trained at the phi whose rounded network costs
2x the baseline's MACs, scored on validation top-1; then the scale ladder (top 3 directions,
the paper's direction and the three single-dimension controls at matched 4x and 8x, 3 seeds).
Expected cost on a 2-core CPU: about 10 minutes of search with 2 workers, then about 70
minutes of ladder (42 trainings). Command:
    effsearch search experiments/mnist_directions.py \
        --workdir experiments/results/mnist5k --workers 2
"""

from common import MNIST, direction_search


def get_config():
    return direction_search("mnist-directions", MNIST)
