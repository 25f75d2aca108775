r"""Experiment 4: the same coefficient search with measured latency (batch 1 forward, p50 on
the worker's device) instead of MACs as the cost objective. CPU version: the latency is the
2-core CPU's. Expected cost: about 8 minutes. Command:
    effsearch search experiments/digits_latency.py \
        --workdir experiments/results/digits --workers 2
"""

from common import coefficient_search

from search.config import Objective


def get_config():
    return coefficient_search("digits-latency", objective=Objective(cost="latency"),
                              trials=12)
