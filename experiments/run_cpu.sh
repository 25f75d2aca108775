#!/usr/bin/env bash
# The CPU versions of experiments 1-5 on one dataset, on the 2-core dev machine (no GPU was
# lent), with the 2 workers sharing one journal file:
#   bash experiments/run_cpu.sh mnist     # MNIST 5k (session 3): about 90 minutes
#   bash experiments/run_cpu.sh digits    # digits (session 2): about 45 minutes
# Every result lands in the dataset's folder under experiments/results/;
# `python experiments/report.py` then regenerates the tables and figures from those files.
set -euo pipefail
cd "$(dirname "$0")/.."
case "${1:-}" in
    mnist) R=experiments/results/mnist5k; LONG_EPOCHS=27 ;;  # 3x the proxy's epochs
    digits) R=experiments/results/digits; LONG_EPOCHS=18 ;;
    *) echo "usage: $0 mnist|digits" >&2; exit 2 ;;
esac
P=$1
mkdir -p "$R"
effsearch search "experiments/${P}_coefficients.py" --workdir "$R" --workers 2
effsearch export "$P-coefficients" --workdir "$R" --pick knee -o "$R/$P-coefficients.knee.json"
effsearch compare "experiments/${P}_coefficients.py" --coeffs "found=$R/$P-coefficients.knee.json" \
    --coeffs paper=1.2,1.1,1.15 --factors 4,8 --seeds 3 --latency -o "$R/comparison.json"
effsearch validate "$P-coefficients" --workdir "$R" --top 5 --epochs "$LONG_EPOCHS" --json \
    > "$R/validation.json"
for config in "experiments/${P}_latency.py" "experiments/${P}"_longtail_*.py; do
    effsearch search "$config" --workdir "$R" --workers 2
done
