#!/usr/bin/env bash
# Experiments 1-5 on MNIST 5k (the `mnist` extra), CPU version, on the 2-core dev machine (no
# GPU was lent). Every result lands in experiments/results/mnist5k/;
# `python experiments/report.py experiments/results/mnist5k` regenerates tables and figures.
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results/mnist5k
mkdir -p "$R"
effsearch search experiments/mnist_coefficients.py --workdir "$R" --workers 2
effsearch export mnist-coefficients --workdir "$R" --pick knee -o "$R/mnist-coefficients.knee.json"
effsearch compare experiments/mnist_coefficients.py --coeffs "found=$R/mnist-coefficients.knee.json" \
    --coeffs paper=1.2,1.1,1.15 --factors 4,8 --seeds 3 --latency -o "$R/comparison.json"
effsearch validate mnist-coefficients --workdir "$R" --top 5 --epochs 27 --json > "$R/validation.json"
effsearch search experiments/mnist_latency.py --workdir "$R" --workers 2
effsearch search experiments/mnist_longtail_top1.py --workdir "$R" --workers 2
effsearch search experiments/mnist_longtail_worst.py --workdir "$R" --workers 2
