r"""The table of scaling directions at matched cost on CIFAR-10 (issue 23), one part per run.

Purpose: every direction of the share-simplex lattice and the paper's, trained with the
chosen CIFAR-10 proxy (experiments/common.py `CIFAR10`, chosen in experiments/README.md E.2)
at matched 2x MACs (step 0.1: 66 directions, 41 distinct networks), 4x and 8x (step 0.2: 21
directions), two training seeds each, with full per-epoch curves and the 10,000 test images'
score, so that searches can be replayed against it without training and the paper's question
asked on real colour images. Each part is a grid study of its own in
experiments/results/cifar10; a killed build resumes. The part is chosen by $TABLE_PART
(default 2x-s0); build all (in the background; `nohup` it) with
    EFFSEARCH_DATA_DIR=../shared/data bash experiments/build_direction_table.sh cifar10
Expected cost on the 2-core CPU: ~2 minutes a 2x training, ~4 at 4x, ~8 at 8x; ~12 hours.
"""

import os

from common import CIFAR10, direction_table


def get_config():
    return direction_table(os.environ.get("TABLE_PART", "2x-s0"), CIFAR10)
