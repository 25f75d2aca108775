r"""Experiment 5 (follow-up): the long-tail coefficient search scored by the worst class's
validation recall, the objective that, unlike balanced accuracy on a balanced validation set,
does differ from top-1. Expected cost: about 3 minutes on a 2-core CPU. Command:
    effsearch search experiments/digits_longtail_worst.py \
        --workdir experiments/results/digits --workers 2
"""

from common import longtail_search


def get_config():
    return longtail_search("digits-longtail-worst", "val_worst_class_recall")
