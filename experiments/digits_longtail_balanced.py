r"""Experiment 5: the coefficient search on a 10:1 long-tailed digits train split, scored by
val_balanced_accuracy (does it find other coefficients than digits_longtail_top1.py?). Validation
stays balanced. Expected cost: about 6 minutes on a 2-core CPU. Command:
    effsearch search experiments/digits_longtail_balanced.py \
        --workdir experiments/results/digits --workers 2
"""

from common import longtail_search


def get_config():
    return longtail_search("digits-longtail-balanced", "val_balanced_accuracy")
