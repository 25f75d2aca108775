"""Depthwise-conv implementations timed on the current device (the "auto" choice rests on this).

    python benchmarks/depthwise.py            # forward and train step, B0 at width 0.25 and 1.0
    python benchmarks/depthwise.py --gpu      # accelerator sizes: B0 at 224 / 64 and 32 / 512

Prints p50 milliseconds per call for XLA's grouped convolution and for the shifted
multiply-add implementation, both numerically equal (tests/test_model.py).
"""

from __future__ import annotations

import sys

import jax

import space
from trainers.probes import measure_latency

CASES = [("B0 w0.25", 0.25, 16, 64), ("B0 w0.25", 0.25, 32, 64), ("B0", 1.0, 32, 32),
         ("B0", 1.0, 64, 8)]
GPU_CASES = [("B0", 1.0, 224, 64), ("B0", 1.0, 32, 512)]


def main() -> None:
    print(f"device: {jax.devices()[0].device_kind}")
    print("| model | res | batch | impl | forward p50 ms | train step p50 ms |")
    print("|---|---|---|---|---|---|")
    for name, width, res, batch in GPU_CASES if "--gpu" in sys.argv[1:] else CASES:
        spec = space.apply_multipliers(space.EFFICIENTNET_B0, width=width).replace(
            resolution=res, num_classes=10)
        for impl in ("xla", "shift"):
            lat = measure_latency(spec, batch=batch, depthwise=impl, repeats=10)
            print(f"| {name} | {res} | {batch} | {impl} | {lat.forward_p50_ms:.1f} | "
                  f"{lat.train_p50_ms:.1f} |", flush=True)


if __name__ == "__main__":
    main()
