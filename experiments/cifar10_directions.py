r"""The default direction search on CIFAR-10 at 2x (issue 23, part 4), then its ladder.

Purpose: what a user running effsearch's defaults on CIFAR-10 gets: TPE over scaling
directions after the paper's direction, the single-dimension controls and the startup design,
each trained at the phi whose rounded network costs 2x the baseline's MACs (5% tolerance),
asynchronous halving with promotion; the baseline, rounding and proxy are the direction
table's (experiments/common.py `CIFAR10`), so the table's rows are these trainings. Then the
ladder, its rows reused from the table where it holds them (seeds 0 and 1 of the paper's
direction and the single dimensions at 4x and 8x), the third seed and the searched
directions trained, scored on the 10,000 test images:

    EFFSEARCH_DATA_DIR=../shared/data effsearch search experiments/cifar10_directions.py \
        --workdir experiments/results/cifar10 --workers 2
    EFFSEARCH_DATA_DIR=../shared/data effsearch validate cifar10-directions \
        --workdir experiments/results/cifar10 --factors 4,8 --seeds 3 --top 1 \
        --reuse experiments/results/cifar10/direction_table.jsonl --json \
        > experiments/results/cifar10/ladder.json

Expected cost on the 2-core CPU: the search ~20 trainings of ~2 minutes (halving stops some
early); the ladder: the searched direction's 3 seeds and the references' third seed at 4x
and 8x, 14 trainings of ~5 (4x) to ~10 (8x) minutes of the whole CPU each (experiments/
finish_cifar10.sh runs two commands that share the rows, one per core).
"""

from common import CIFAR10

from search.config import CoefficientSearch, SearchConfig


def get_config() -> SearchConfig:
    return SearchConfig(
        name="cifar10-directions",
        search=CoefficientSearch(baseline=CIFAR10.baseline,
                                 resolution_multiple=CIFAR10.resolution_multiple,
                                 channel_divisor=CIFAR10.channel_divisor),
        proxy=CIFAR10.proxy)
