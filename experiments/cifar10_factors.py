r"""The search with factor rungs on CIFAR-10 (issue 26, part 3), run once for real.

Purpose: the default direction search of experiments/cifar10_directions.py (the table's
baseline, rounding and proxy; TPE after the references and the startup design; halving inside
the lowest factor), with the cost factor as a fidelity: every direction trained at matched 2x
MACs, the best third of those completed at each factor trained again at 4x and then 8x, and
the best at 8x confirmed with 3 seeds; its answer is compared with the direction table's 8x
rows (experiments/README.md part F). Replayed first against the table
(`benchmarks/search_efficiency.py --table ... --target-factor 8`), so that this real run is
the one the replay says is worth it:

    EFFSEARCH_DATA_DIR=../shared/data effsearch search experiments/cifar10_factors.py \
        --workdir experiments/results/cifar10 --workers 2

Expected cost on the 2-core CPU: ~20 trainings at 2x, most stopped after one epoch (~1
minute each), ~3 at 4x (~5 minutes), ~1 at 8x and its 2 confirming seeds (~10 minutes each).
"""

from common import CIFAR10

from search.config import CoefficientSearch, SearchConfig


def get_config() -> SearchConfig:
    return SearchConfig(
        name="cifar10-factors",
        search=CoefficientSearch(baseline=CIFAR10.baseline,
                                 resolution_multiple=CIFAR10.resolution_multiple,
                                 channel_divisor=CIFAR10.channel_divisor,
                                 factors=(2.0, 4.0, 8.0)),
        proxy=CIFAR10.proxy, ladder_top=1)
