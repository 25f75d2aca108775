#!/usr/bin/env bash
# The paper's two steps end to end on MNIST 5k (session 5, CPU): a baseline search, then the
# direction search and ladder on the baseline it exports (experiments 7a and 7b).
#   bash experiments/run_baseline_pipeline.sh
set -euo pipefail
cd "$(dirname "$0")/.."
R=experiments/results/mnist5k
effsearch search experiments/mnist_baseline.py --workdir "$R"
effsearch export mnist-baseline --workdir "$R" -o "$R/mnist-baseline.arch.json"
effsearch search experiments/mnist_baseline_directions.py --workdir "$R"
