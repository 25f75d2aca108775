#!/usr/bin/env bash
# The GPU measurements still open, in one run of under 8 minutes on one GPU (issue 14):
#   1. B0 train step vs timm (PyTorch eager) at 224 px / batch 256 and 32 px / batch 1024,
#      each twice with one compilation cache: the first is the cold compile, the second the
#      warm-cache compile a second process pays;
#   2. the depthwise convolution choice (XLA's grouped conv vs shifted multiply-adds);
#   3. the init + compile share of a short proxy search (the quickstart, 3 trials).
# Every step has its own time limit, so one slow step leaves the others' numbers. Results go
# to $OUT (default benchmarks/results/gpu): one JSON per step, summary.md, log.txt.
#
#   bash benchmarks/gpu_suite.sh              # on the GPU machine, from the repository root
#   DRY_RUN=1 bash benchmarks/gpu_suite.sh    # prints the steps and exits (the CPU check)
#
# Packages missing on the GPU machine (optuna and what it needs) travel as wheels in .whl/
# (see .library/device/README.md); they are installed to /tmp/site when present.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
PY="${PYTHON:-python3}"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# JAX and PyTorch share the GPU in turn; neither may take 75% of it up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false
export EFFSEARCH_CACHE_DIR="${EFFSEARCH_CACHE_DIR:-/tmp/effsearch-gpu-cache}"

steps=(
  "bench_224_cold|110|-m search.cli bench --model efficientnet-b0 --resolution 224 --batch 256 --steps 20 --compare-torch --json"
  "bench_224_warm|60|-m search.cli bench --model efficientnet-b0 --resolution 224 --batch 256 --steps 20 --json"
  "bench_32_cold|100|-m search.cli bench --model efficientnet-b0 --resolution 32 --batch 1024 --steps 20 --compare-torch --json"
  "bench_32_warm|45|-m search.cli bench --model efficientnet-b0 --resolution 32 --batch 1024 --steps 20 --json"
  "depthwise|70|benchmarks/depthwise.py --gpu"
  "quickstart|70|-m search.cli search experiments/quickstart.py --trials 3 --workdir $OUT/quickstart"
  "quickstart_overhead|15|benchmarks/trial_overhead.py --journal $OUT/quickstart/effsearch.journal --study quickstart"
)

if [[ -n "${DRY_RUN:-}" ]]; then
  for step in "${steps[@]}"; do
    IFS='|' read -r name limit args <<<"$step"
    echo "$name (${limit}s): $PY $args"
  done
  exit 0
fi

mkdir -p "$OUT"
rm -rf "$EFFSEARCH_CACHE_DIR" "$OUT/quickstart"  # the cold runs must be cold
if compgen -G ".whl/*.whl" >/dev/null; then
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target /tmp/site .whl/*.whl && export PYTHONPATH="$PYTHONPATH:/tmp/site"
fi
{
  echo "# GPU suite, $(date -u +%Y-%m-%dT%H:%MZ)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  "$PY" -c 'import jax, flax; print("jax", jax.__version__, "flax", flax.__version__, jax.devices())'
  echo
  echo "| step | seconds | exit | result |"
  echo "|---|---|---|---|"
} >"$OUT/summary.md" 2>>"$OUT/log.txt"

for step in "${steps[@]}"; do
  IFS='|' read -r name limit args <<<"$step"
  echo "== $name: $PY $args" | tee -a "$OUT/log.txt"
  start=$(date +%s)
  # shellcheck disable=SC2086  # args is a word list on purpose
  timeout "$limit" "$PY" $args >"$OUT/$name.json" 2>>"$OUT/log.txt"
  code=$?
  took=$(( $(date +%s) - start ))
  result=$(tail -c 300 "$OUT/$name.json" | tr '\n|' ' /')
  echo "| $name | $took | $code | ${result} |" >>"$OUT/summary.md"
  echo "   exit $code after ${took}s" | tee -a "$OUT/log.txt"
done
cat "$OUT/summary.md"
