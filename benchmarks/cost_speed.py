"""How many specs per second the analytic cost model ranks (pure Python, one core), and how
long `space.family.match_phi` takes to find a direction's member at matched 2x MACs.

    python benchmarks/cost_speed.py
"""

from __future__ import annotations

import dataclasses
import sys
import time
from pathlib import Path

import space
from space.family import match_phi


def main() -> None:
    specs = {name: space.get_model_spec(name) for name in ("efficientnet-b0", "efficientnet-b7")}
    for name, spec in specs.items():
        n, start = 20_000, time.perf_counter()
        for _ in range(n):
            space.cost(spec)
        rate = n / (time.perf_counter() - start)
        print(f"{name}: {spec.num_blocks} blocks, {rate:,.0f} specs/s")
    # The MNIST proxy baseline of experiments/README.md (14 px, 1 channel, 10 classes) and the
    # 66 directions of the 0.1 share lattice, rounded as its searches round them.
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
    from common import BASELINE, MNIST

    from search.manifold import Simplex

    proxy = dataclasses.replace(MNIST.proxy, arch=BASELINE).spec(10, 1)
    lattice = [Simplex().coefficients(p) for p in Simplex().grid(0.1)]
    start = time.perf_counter()
    for coeffs in lattice:
        match_phi(proxy, coeffs, 2.0, resolution_multiple=2, channel_divisor=2)
    per = (time.perf_counter() - start) / len(lattice)
    print(f"match_phi on the MNIST proxy baseline at 2x MACs: {per * 1e3:.1f} ms a direction "
          f"({len(lattice)} directions)")


if __name__ == "__main__":
    main()
