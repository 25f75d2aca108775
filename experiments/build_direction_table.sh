#!/usr/bin/env bash
# Trains (or resumes) every part of the direction table, then exports it to JSON lines.
# Usage: bash experiments/build_direction_table.sh [PART ...]   (default: all parts)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
parts=("$@")
[[ ${#parts[@]} -gt 0 ]] || parts=(2x-s0 2x-s1 2x-s2 4x-s0 4x-s1)
mkdir -p experiments/results/mnist5k/logs
for part in "${parts[@]}"; do
  TABLE_PART=$part "$BIN/effsearch" search experiments/direction_table.py \
    --workdir experiments/results/mnist5k --workers 2 \
    2>&1 | tee -a "experiments/results/mnist5k/logs/table-$part.log"
done
