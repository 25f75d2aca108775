r"""The table of scaling directions at matched cost on MNIST 5k (issue 15), one part per run.

Purpose: every direction of the share-simplex lattice trained at matched 2x MACs (step 0.1,
66 directions, 3 training seeds) and a coarser lattice at 4x (step 0.2, 21 directions, 2
seeds), with full per-epoch curves, so that searches can be replayed against it without
training. Each part is a grid study of its own in experiments/results/mnist5k; a killed build
resumes. The part is chosen by $TABLE_PART (default 2x-s0); build all with
    bash experiments/build_direction_table.sh
Expected cost: about 45 s per training on the 2-core CPU with 2 workers, ~3 h in all.
"""

import os

from common import direction_table


def get_config():
    return direction_table(os.environ.get("TABLE_PART", "2x-s0"))
