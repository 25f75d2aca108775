r"""Experiment 1c (session 5): `mnist_directions.py`'s search again, without its ladder, after
the budget began counting distinct trainings (duplicates of a trained network no longer
count). Shows how many distinct directions the same budget now trains and how many reach the
full 9 epochs. Expected cost: about 8 minutes on a 2-core CPU. Command:
    effsearch search experiments/mnist_directions_distinct.py \
        --workdir experiments/results/mnist5k --workers 2
"""

from common import MNIST, direction_search


def get_config():
    return direction_search("mnist-directions-distinct", MNIST, ladder=())
