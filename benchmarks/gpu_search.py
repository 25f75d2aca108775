"""The search configs of benchmarks/gpu_suite.sh: a search that must stop, and a tiny one.

    EFFSEARCH_SUITE_SEARCH=oom effsearch search benchmarks/gpu_search.py --trials 8

`EFFSEARCH_SUITE_SEARCH` picks the study:
    oom      (default) the quickstart's search on digits at 224 px, one epoch a trial: under
             a tiny XLA_PYTHON_CLIENT_MEM_FRACTION with preallocation neither the data nor
             the model fits on the GPU, so every trial runs out of memory (on a CPU the
             fraction does nothing and the trials train)
    diverge  a one-block baseline at 8 px with a learning rate of 1e30: every trial's loss
             is NaN in its first epoch. The same failure-stop path on any backend, with
             networks that compile in seconds on a CPU (the rehearsal)
    tiny     that baseline with the default learning rate: a search that succeeds, cheap
             enough for two workers on two CPU cores (the rehearsal of `--workers 2`)
With oom or diverge the search must stop after a few failed trials in a row, exit code 1,
instead of writing failed trials until its time limit.
"""

import os

import space
from search.config import CoefficientSearch, SearchConfig
from trainers.config import ProxyConfig

# One MBConv block: the smallest network the coefficient search can scale in every dimension.
ONE_BLOCK = "stem8-mb_r1_k3_s1_e1_c8-head16"
KINDS = ("oom", "diverge", "tiny")


def get_config() -> SearchConfig:
    kind = os.environ.get("EFFSEARCH_SUITE_SEARCH", "oom")
    if kind not in KINDS:
        raise space.UserError(f"EFFSEARCH_SUITE_SEARCH={kind!r}: one of {', '.join(KINDS)}")
    tiny = kind != "oom"
    return SearchConfig(
        name=f"gpu-suite-{kind}",
        search=CoefficientSearch(baseline=ONE_BLOCK if tiny else space.PROXY_BASELINE,
                                 phi=1.0 if tiny else 2.0, target=2.0,
                                 tolerance=0.25 if tiny else 0.1, resolution_multiple=2,
                                 channel_divisor=2),
        # One epoch: a diverging loss shows at the end of the first, an OOM before it.
        proxy=ProxyConfig(dataset="digits", resolution=8 if tiny else 224, epochs=1,
                          batch_size=64, flip=False,
                          learning_rate=1e30 if kind == "diverge" else None),
        sampler="tpe",
        trials=8,
        startup_trials=1,
        halving=None,
    )
