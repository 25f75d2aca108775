"""Plain training vs each class-imbalance remedy on a long-tailed train split.

    python benchmarks/imbalance_remedies.py [RATIO ...] [--dataset mnist5k] [--seeds 3]
        [--resolution 14] [--epochs 9]                       # default ratios: 10 100

The 3-stage MBConv net of proxy_recipe.py, batch 64, no flips; the train split is subsampled
to the exponential long tail with the given largest/smallest class ratio (the same subset for
every seed: `split_seed` fixes it), validation and test stay balanced. Each cell is the mean
+- std over the seeds (initialisation and batch order), printed as a Markdown table.
"""

from __future__ import annotations

import argparse
import dataclasses

import numpy as np

import space
from trainers import runtime
from trainers.data import load_dataset
from trainers.imbalance import REMEDIES
from trainers.proxy import ProxyConfig, train_and_evaluate

ARCH = space.PROXY_BASELINE
METRICS = ("val_top1", "val_balanced_accuracy", "val_macro_f1", "val_worst_class_recall",
           "test_balanced_accuracy")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("ratios", nargs="*", type=float, default=[10.0, 100.0])
    parser.add_argument("--dataset", default="mnist5k")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--resolution", type=int, default=14)
    parser.add_argument("--epochs", type=int, default=9)
    args = parser.parse_args()
    runtime.configure()
    data = load_dataset(args.dataset)
    base = ProxyConfig(arch=ARCH, dataset=args.dataset, resolution=args.resolution,
                       epochs=args.epochs, batch_size=64, flip=False)
    print(f"{args.dataset}, {args.resolution} px, {args.epochs} epochs, seeds "
          f"0-{args.seeds - 1}, {len(data.val)} balanced validation images")
    print("| ratio | remedy | val top-1 | balanced acc. | macro-F1 | worst-class recall | "
          "test balanced acc. |")
    print("|---|---|---|---|---|---|---|")
    for ratio in args.ratios:
        for remedy in REMEDIES:
            runs = [train_and_evaluate(dataclasses.replace(base, imbalance=ratio, remedy=remedy,
                                                           seed=seed), dataset=data)
                    for seed in range(args.seeds)]
            cells = []
            for metric in METRICS:
                values = np.array([getattr(r, metric) for r in runs], dtype=float)
                cells.append(f"{values.mean():.3f} +- {values.std():.3f}")
            print(f"| {ratio:g} | {remedy} | " + " | ".join(cells) + " |", flush=True)


if __name__ == "__main__":
    main()
