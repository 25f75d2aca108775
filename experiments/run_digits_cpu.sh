#!/usr/bin/env bash
# The CPU versions of the experiments, in order, on the 2-core dev machine (no GPU was lent).
# Every result lands in experiments/results/digits/; `python experiments/report.py` then regenerates
# the tables and figures from those files.
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results/digits
mkdir -p "$R"
effsearch search experiments/digits_coefficients.py --workdir "$R" --workers 2
effsearch export digits-coefficients --workdir "$R" --pick knee -o "$R/digits-coefficients.knee.json"
effsearch compare experiments/digits_coefficients.py --coeffs "found=$R/digits-coefficients.knee.json" \
    --coeffs paper=1.2,1.1,1.15 --factors 4,8 --seeds 3 --latency -o "$R/comparison.json"
effsearch validate digits-coefficients --workdir "$R" --top 5 --epochs 18 --json > "$R/validation.json"
effsearch search experiments/digits_longtail_top1.py --workdir "$R" --workers 2
effsearch search experiments/digits_longtail_balanced.py --workdir "$R" --workers 2
effsearch search experiments/digits_longtail_worst.py --workdir "$R" --workers 2
effsearch search experiments/digits_latency.py --workdir "$R" --workers 2
