r"""Experiment 4: the MNIST coefficient search with measured latency (batch-1 forward, p50 on
the worker's device; here the 2-core CPU) instead of MACs as the cost objective. Expected
cost: about 8 minutes. Command:
    effsearch search experiments/mnist_latency.py \
        --workdir experiments/results/mnist5k --workers 2
"""

from common import MNIST, coefficient_search

from search.config import Objective


def get_config():
    return coefficient_search("mnist-latency", MNIST, objective=Objective(cost="latency"),
                              trials=12)
