#!/usr/bin/env bash
# Trains (or resumes) every part of a direction table, then exports it to JSON lines.
# Usage: bash experiments/build_direction_table.sh [mnist5k|cifar10] [PART ...]
#   (default: mnist5k, all of its parts; cifar10 needs EFFSEARCH_DATA_DIR, see its config)
set -euo pipefail
cd "$(dirname "$0")/.."
BIN=${BIN:-.venv/bin}
dataset=mnist5k
if [[ ${1:-} == mnist5k || ${1:-} == cifar10 ]]; then dataset=$1; shift; fi
parts=("$@")
if [[ $dataset == cifar10 ]]; then
  config=experiments/cifar10_direction_table.py
  [[ ${#parts[@]} -gt 0 ]] || parts=(2x-s0 2x-s1 4x-s0 4x-s1 8x-s0 8x-s1)
else
  config=experiments/direction_table.py
  [[ ${#parts[@]} -gt 0 ]] || parts=(2x-s0 2x-s1 2x-s2 4x-s0 4x-s1)
fi
results=experiments/results/$dataset
mkdir -p "$results/logs"
for part in "${parts[@]}"; do
  TABLE_PART=$part "$BIN/effsearch" search "$config" --workdir "$results" --workers 2 \
    2>&1 | tee -a "$results/logs/table-$part.log"
  "$BIN/python" experiments/export_direction_table.py --dataset "$dataset" \
    > "$results/logs/table-export.log" 2>&1 || true
done
