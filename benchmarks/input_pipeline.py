"""Batches streamed from the host (grain) against splits on the device: speed and memory.

    python benchmarks/input_pipeline.py [--dataset cifar10] [--fraction 0.2] [--epochs 2]
        [--resolution 16] [--json]

In one process (the CPU is noisy: compare ratios), three measurements on one dataset:
- the parent of `--workers N`: `describe_dataset` against `load_dataset`, time and the
  resident memory each adds;
- the quickstart baseline trained with `input_pipeline="device"` and with `"grain"`, same
  seed: images/s, step time, compile and data time, and epoch 1's train loss (the same for
  both: the same batches and step keys).
CIFAR-10 needs `EFFSEARCH_DATA_DIR` (see ../shared/data/README.md); `--dataset digits` runs
anywhere. Numbers recorded in README.md ("Data larger than a device").
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import resource
import time

import space
from trainers.data import describe_dataset, load_dataset
from trainers.proxy import ProxyConfig, train_and_evaluate


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # peak, Linux: KiB


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="cifar10")
    parser.add_argument("--fraction", type=float, default=0.2)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--resolution", type=int, default=16)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    out: dict = {"dataset": args.dataset}
    before = _rss_mb()
    t = time.perf_counter()
    info = describe_dataset(args.dataset)
    out["describe"] = {"s": time.perf_counter() - t, "peak_rss_added_mb": _rss_mb() - before,
                       "decoded_mb": info.nbytes / 2**20}
    before = _rss_mb()
    t = time.perf_counter()
    dataset = load_dataset(args.dataset)
    out["load"] = {"s": time.perf_counter() - t, "peak_rss_added_mb": _rss_mb() - before}
    dataset.stats()
    config = ProxyConfig(arch=space.PROXY_BASELINE, dataset=args.dataset,
                         resolution=args.resolution, fraction=args.fraction,
                         epochs=args.epochs, batch_size=128)
    for name in ("device", "grain"):
        r = train_and_evaluate(dataclasses.replace(config, input_pipeline=name),
                               dataset=dataset)
        out[name] = {"images_per_s": r.images_per_s, "step_time_s": r.step_time_s,
                     "compile_s": r.compile_s, "data_s": r.data_s, "steps": r.steps,
                     "epoch1_train_loss": r.curve[0]["train_loss"], "val_top1": r.val_top1}
    out["grain_over_device_speed"] = out["grain"]["images_per_s"] / out["device"]["images_per_s"]
    if args.json:
        print(json.dumps(out, indent=1))
        return
    for key, value in out.items():
        print(f"{key}: {value}")


if __name__ == "__main__":
    main()
