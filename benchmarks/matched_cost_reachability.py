"""How many scaling directions can be matched to a realized cost factor at proxy scale?

    python benchmarks/matched_cost_reachability.py [--factors 2,4,8] [--directions 100]

A direction splits the log-cost among depth, width and resolution (shares s_d + s_w + s_r = 1;
alpha = 2^s_d, beta = 2^(s_w/2), gamma = 2^(s_r/2)). For each direction, drawn uniformly on the
share simplex, `search.comparison.match_cost` finds the member of its family whose realized
MACs come closest to the factor times the baseline's; this prints the share of directions
whose closest member lies within 5% and 10% of the factor, for the proxy baseline at the
resolutions and channel roundings the experiments use. Analytic cost model only: seconds.
"""

from __future__ import annotations

import argparse

import numpy as np

import space
from search.comparison import Method, match_cost

SETUPS = (("digits 16 px, channels /8", 16, 8), ("digits 16 px, channels /2", 16, 2),
          ("MNIST 14 px, channels /2", 14, 2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", default="2,4,8")
    parser.add_argument("--directions", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    shares = rng.dirichlet(np.ones(3), size=args.directions)  # uniform on the simplex
    print("| setup | factor | within 5% | within 10% | paper's direction |")
    print("|---|---|---|---|---|")
    for label, resolution, divisor in SETUPS:
        baseline = space.decode(space.PROXY_BASELINE).replace(
            resolution=resolution, num_classes=10, in_channels=1)
        for factor in (float(f) for f in args.factors.split(",")):
            errors = np.array([abs(_error(baseline, space.Coefficients(
                2**d, 2 ** (w / 2), 2 ** (r / 2)), factor, divisor)) for d, w, r in shares])
            paper = _error(baseline, space.PAPER, factor, divisor)
            print(f"| {label} | {factor:g}x | {np.mean(errors <= 0.05):.0%} | "
                  f"{np.mean(errors <= 0.10):.0%} | {paper:+.1%} |")


def _error(baseline: space.ArchSpec, coeffs: space.Coefficients, factor: float,
           divisor: int) -> float:
    """Relative distance from `factor` of the closest member's realized MACs ratio."""
    spec, _ = match_cost(baseline, Method("d", "compound", coeffs), factor,
                         resolution_multiple=2, channel_divisor=divisor)
    return space.cost(spec).macs / space.cost(baseline).macs / factor - 1

if __name__ == "__main__":
    main()
