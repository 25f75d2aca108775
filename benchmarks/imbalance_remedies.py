"""Plain training vs each class-imbalance remedy on long-tailed digits.

    python benchmarks/imbalance_remedies.py [RATIO ...]     # default: 10 100

The 3-stage MBConv net of proxy_recipe.py at 16 px, 8 epochs, batch 64, no flips, seed 0;
the train split is subsampled to the exponential long tail with the given largest/smallest
class ratio, validation and test stay balanced. One seed per cell: differences of a few
points are noise at this size (144 validation images).
"""

from __future__ import annotations

import dataclasses
import sys

from trainers import runtime
from trainers.data import load_dataset
from trainers.imbalance import REMEDIES
from trainers.proxy import ProxyConfig, train_and_evaluate

ARCH = ("stem16-mb_r1_k3_s1_e1_c16_se0.25-mb_r2_k3_s2_e4_c24_se0.25-mb_r2_k3_s2_e4_c32_se0.25-"
        "head128")


def main(ratios: list[float]) -> None:
    runtime.configure()
    data = load_dataset("digits")
    base = ProxyConfig(arch=ARCH, resolution=16, epochs=8, batch_size=64, flip=False)
    print("| ratio | remedy | val top-1 | balanced acc. | macro-F1 | worst-class recall | "
          "test balanced acc. |")
    print("|---|---|---|---|---|---|---|")
    for ratio in ratios:
        for remedy in REMEDIES:
            r = train_and_evaluate(dataclasses.replace(base, imbalance=ratio, remedy=remedy),
                                   dataset=data)
            print(f"| {ratio:g} | {remedy} | {r.val_top1:.3f} | {r.val_balanced_accuracy:.3f} "
                  f"| {r.val_macro_f1:.3f} | {r.val_worst_class_recall:.3f} | "
                  f"{r.test_balanced_accuracy:.3f} |", flush=True)


if __name__ == "__main__":
    main([float(x) for x in sys.argv[1:]] or [10.0, 100.0])
