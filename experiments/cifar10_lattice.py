r"""How many distinct networks of the 0.1 share lattice does each candidate CIFAR-10 baseline
reach within 5% of a matched cost factor? (issue 23, part 2: at least 30 at 2x.)

    python experiments/cifar10_lattice.py [--factors 2,4,8] [-o results/cifar10/lattice.md]

Rounding (ceil on depth, channels to a divisor, resolution to a multiple) maps nearby
directions to one network and puts others out of reach of the factor; a reliability
measurement and a direction table need enough distinct networks to rank. Analytic cost model
only (`search.reliability.lattice_networks`): seconds, no training. Prints a markdown table:
baseline, input size, channel divisor, resolution multiple, the baseline's MACs and the count
at each factor.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from common import BASELINES

import space
from search.kinds.coefficients import CoefficientSearch
from search.reliability import lattice_networks


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--factors", default="2,4,8")
    parser.add_argument("--step", type=float, default=0.1)
    parser.add_argument("--tolerance", type=float, default=0.05)
    parser.add_argument("-o", "--output", type=Path)
    args = parser.parse_args()
    factors = [float(f) for f in args.factors.split(",")]
    lines = ["| baseline | px | channels / | resolution multiple | MACs | "
             + " | ".join(f"{f:g}x" for f in factors) + " |",
             "|---|---|---|---|---|" + "---|" * len(factors)]
    for (name, arch), px, divisor, multiple in itertools.product(
            BASELINES.items(), (16, 20, 24), (2, 4, 8), (1, 2)):
        baseline = space.decode(arch).replace(resolution=px, num_classes=10, in_channels=3)
        counts = []
        for factor in factors:
            # factor = target^phi at CoefficientSearch's default target of 2.
            kind = CoefficientSearch(baseline=arch, phi=math.log2(factor),
                                     tolerance=args.tolerance, channel_divisor=divisor,
                                     resolution_multiple=multiple)
            counts.append(len(lattice_networks(kind, baseline, args.step)))
        lines.append(f"| {name} | {px} | {divisor} | {multiple} | "
                     f"{space.cost(baseline).macs / 1e6:.2f}M | "
                     + " | ".join(map(str, counts)) + " |")
        print(lines[-1], flush=True)
    if args.output:
        args.output.parent.mkdir(parents=True, exist_ok=True)
        args.output.write_text("\n".join(lines) + "\n")
        sys.stderr.write(f"wrote {args.output}\n")


if __name__ == "__main__":
    main()
