"""What a search trial spends before its first step: initialisation and XLA compilation.

    python benchmarks/trial_overhead.py                    # per-stage times of one proxy trial
    python benchmarks/trial_overhead.py --init-check 5     # host vs JAX init: curves, 5 seeds
    python benchmarks/trial_overhead.py --journal J --study S   # overhead share of a study

The first mode trains the MNIST 5k proxy of experiments/README.md part A on typical trial
networks, each in a fresh process with a cold compilation cache, and prints init, compile and
training time and the overhead share. `--init-check N` trains the quickstart's digits proxy from
N seeds with the parameters drawn on the host (`space.model.create_model`) and with JAX's own
initialisers (compiled at -O0, as before the host path), and prints the per-epoch validation
curve of each as mean +- standard deviation: the two must agree within the seed noise.
`--journal` sums `init_s`, `compile_s` and `wall_s` over a study's finished trials.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
# Networks the mnist-coefficients study trained (3-stage proxy baseline scaled at phi = 1).
TRIALS = [
    ("stem16-mb_r1_k3_s1_e1_c16_se0.25-mb_r2_k3_s2_e4_c24_se0.25-mb_r2_k3_s2_e4_c32_se0.25-"
     "head128", 14),
    ("stem18-mb_r2_k3_s1_e1_c18_se0.25-mb_r3_k3_s2_e4_c26_se0.25-mb_r3_k3_s2_e4_c36_se0.25-"
     "head140", 16),
    ("stem16-mb_r2_k3_s1_e1_c16_se0.25-mb_r4_k3_s2_e4_c24_se0.25-mb_r4_k3_s2_e4_c32_se0.25-"
     "head128", 14),
]


def _one_trial(arch: str, resolution: int, epochs: int) -> dict:
    """Runs in a child process (cold in-memory caches): one proxy training, its timings."""
    sys.path.insert(0, str(ROOT / "experiments"))
    from common import MNIST

    from trainers import runtime
    from trainers.proxy import train_and_evaluate

    runtime.configure()
    config = dataclasses.replace(MNIST.proxy, arch=arch, resolution=resolution, epochs=epochs)
    r = train_and_evaluate(config)
    return {"arch": arch[:40], "resolution": resolution, "epochs": epochs,
            "init_s": r.init_s, "compile_s": r.compile_s, "wall_s": r.wall_s,
            "images_per_s": r.images_per_s, "val_top1": r.val_top1,
            "overhead": (r.init_s + r.compile_s) / r.wall_s}


def stages(epochs: int, repeats: int) -> list[dict]:
    rows = []
    for arch, res in TRIALS:
        for _ in range(repeats):
            with tempfile.TemporaryDirectory() as cache:
                out = subprocess.run(
                    [sys.executable, __file__, "--child", arch, str(res), str(epochs)],
                    capture_output=True, text=True, check=True,
                    env={**os.environ, "EFFSEARCH_CACHE_DIR": cache})
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    return rows


def _jax_init_model(spec, *, seed: int, dtype, depthwise: str, bn_momentum: float):
    """The initialisation before the host path: JAX's initialisers, one -O0 compile."""
    import jax
    from flax import nnx

    from space.model import EfficientNet

    def init():
        return nnx.split(EfficientNet(spec, rngs=nnx.Rngs(params=seed, dropout=seed + 1),
                                      dtype=dtype, depthwise=depthwise,
                                      bn_momentum=bn_momentum))

    graphdef, _ = nnx.eval_shape(init)
    compiled = jax.jit(lambda: init()[1]).lower().compile(
        {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True})
    return nnx.merge(graphdef, compiled())


def init_check(seeds: int) -> dict:
    sys.path.insert(0, str(ROOT / "experiments"))
    from common import BASELINE, DIGITS

    from trainers import proxy, runtime

    runtime.configure()
    config = dataclasses.replace(DIGITS.proxy, arch=BASELINE)
    host_init = proxy.create_model
    summary = {}
    for kind, create in (("host", host_init), ("jax", _jax_init_model)):
        proxy.create_model = create  # the trainer's one call site
        runs = []
        for seed in range(seeds):
            r = proxy.train_and_evaluate(dataclasses.replace(config, seed=seed))
            runs.append([c["val_top1"] for c in r.curve])
        a = np.asarray(runs)
        summary[kind] = {"mean": a.mean(0).round(4).tolist(), "std": a.std(0).round(4).tolist()}
        print(f"{kind:>4} init, val top-1 per epoch (mean +- std, {seeds} seeds): "
              + "  ".join(f"{m:.3f}+-{s:.3f}" for m, s in zip(a.mean(0), a.std(0),
                                                              strict=True)), flush=True)
    proxy.create_model = host_init
    return summary


def journal(path: str, study: str) -> dict:
    import optuna

    from search.storage import open_storage

    storage = open_storage(path, create=False)
    trials = [t.user_attrs for t in optuna.load_study(study_name=study, storage=storage).trials
              if "wall_s" in t.user_attrs]
    total = {k: sum(a.get(k, 0.0) for a in trials) for k in ("wall_s", "compile_s", "init_s")}
    ips = [a["images_per_s"] for a in trials if a.get("images_per_s")]
    return {"study": study, "trainings": len(trials), **{k: round(v, 1) for k, v in
                                                        total.items()},
            "compile_share": total["compile_s"] / total["wall_s"],
            "init_share": total["init_s"] / total["wall_s"],
            "images_per_s_median": float(np.median(ips)) if ips else None}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=9)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--init-check", type=int, metavar="SEEDS")
    parser.add_argument("--journal")
    parser.add_argument("--study")
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        arch, res, epochs = args.child
        print(json.dumps(_one_trial(arch, int(res), int(epochs))))
    elif args.journal:
        print(json.dumps(journal(args.journal, args.study), indent=1))
    elif args.init_check:
        init_check(args.init_check)
    else:
        rows = stages(args.epochs, args.repeats)
        share = (sum(r["init_s"] + r["compile_s"] for r in rows)
                 / sum(r["wall_s"] for r in rows))
        print(f"overhead (init + compile) share of trial wall: {share:.1%}")


if __name__ == "__main__":
    main()
