"""How many specs per second the analytic cost model ranks (pure Python, one core).

    python benchmarks/cost_speed.py
"""

from __future__ import annotations

import time

import space


def main() -> None:
    specs = {name: space.get_model_spec(name) for name in ("efficientnet-b0", "efficientnet-b7")}
    for name, spec in specs.items():
        n, start = 20_000, time.perf_counter()
        for _ in range(n):
            space.cost(spec)
        rate = n / (time.perf_counter() - start)
        print(f"{name}: {spec.num_blocks} blocks, {rate:,.0f} specs/s")


if __name__ == "__main__":
    main()
