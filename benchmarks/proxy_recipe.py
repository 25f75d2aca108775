"""The measurements behind the proxy defaults (optimizer, BatchNorm momentum).

    python benchmarks/proxy_recipe.py

A small 3-stage MBConv net on digits at 16 px, 5 epochs, batch 64, no flips (digits are not
mirror-symmetric), seed 0; prints the validation top-1 after each epoch for each variant.
"""

from __future__ import annotations

import dataclasses

import space
from trainers import runtime
from trainers.data import load_dataset
from trainers.proxy import ProxyConfig, train_and_evaluate

ARCH = space.PROXY_BASELINE
VARIANTS = {
    "sgd + cosine, BN momentum 0.9 (default)": {},
    "sgd + cosine, BN momentum 0.99 (TF)": {"bn_momentum": 0.99},
    "rmsprop (paper recipe), BN 0.9": {"optimizer": "rmsprop"},
    "rmsprop (paper recipe), BN 0.99": {"optimizer": "rmsprop", "bn_momentum": 0.99},
}


def main() -> None:
    runtime.configure()
    data = load_dataset("digits")
    base = ProxyConfig(arch=ARCH, resolution=16, epochs=5, batch_size=64, flip=False)
    print("| variant | val top-1 per epoch | final | test |")
    print("|---|---|---|---|")
    for name, changes in VARIANTS.items():
        r = train_and_evaluate(dataclasses.replace(base, **changes), dataset=data)
        curve = " ".join(f"{c['val_top1']:.2f}" for c in r.curve)
        print(f"| {name} | {curve} | {r.val_top1:.3f} | {r.test_top1:.3f} |", flush=True)


if __name__ == "__main__":
    main()
