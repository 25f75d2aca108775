#!/usr/bin/env bash
# The GPU measurements still open, in one run of under 8 minutes on one GPU, from a bare source
# tree (nothing pip-installed, no network), cheapest and most decisive first (issue 22):
#   env          backend, devices, versions and what each of 2 workers gets (`effsearch env`)
#   proxy_cold   a tiny proxy (the quickstart's baseline, digits, 16 px, 2 epochs), cold cache
#   proxy_warm   the same again on the same cache: what a second process pays
#   autotune0    the same with XLA's autotuning off, on a fresh cache: the autotune share
#   bench        B0 train step at 224 px, batch 256, JAX only, cold (about 80 s of compile)
#   timm         timm's B0 in PyTorch, the same size, its own step (skipped if absent)
#   depthwise    XLA's grouped conv vs shifted multiply-adds at that size ("auto" first: a
#                hit in bench's cache)
#   oom_train    a proxy whose data does not fit a tiny memory fraction: a "failed" result
#                whose reason is "out of memory ...", one line, no traceback
#   oom_search   a search whose every trial runs out of memory: it must stop (exit 1,
#                "effsearch search: stopped: ...") instead of failing trials until killed
#   two_workers  `--workers 2` on one GPU, with the workers' log tails
# Every step has its own time limit, so a slow step leaves the others' numbers; its result
# (exit code, seconds, its JSON, stderr's last line) is printed as one JSON line when it ends,
# and $OUT (default benchmarks/results/gpu) gets summary.md, a row per step, and results.tar.gz
# (every result, stderr and log), both rewritten after every step.
#
#   bash benchmarks/gpu_suite.sh               # on the GPU host, from the repository root
#   REHEARSAL=1 bash benchmarks/gpu_suite.sh   # the same steps at tiny sizes on a CPU (CI)
#   DRY_RUN=1 bash benchmarks/gpu_suite.sh     # prints the steps and exits
#
# PYTHON (default python3) runs every step; KEEP_WORK=1 keeps its temporary folder. The wheels a GPU host lacks (optuna, colorlog)
# travel in .whl/ (benchmarks/fetch_wheels.sh) and are installed into a temporary folder.
# Exit code 0 only if every step met its expectation (a skip for an absent library counts).
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-benchmarks/results/gpu}"
PY="${PYTHON:-python3}"
WORK="${TMPDIR:-/tmp}/effsearch-gpu-suite.$$"
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
# JAX and PyTorch share the GPU in turn; neither may take 75% of it up front.
export XLA_PYTHON_CLIENT_PREALLOCATE=false

TINY="stem16-mb_r1_k3_s1_e1_c16_se0.25-mb_r2_k3_s2_e4_c24_se0.25-mb_r2_k3_s2_e4_c32_se0.25-head128"
PROXY="-m search.cli train $TINY --dataset digits --resolution 16 --epochs 2 --json"
if [[ -n "${REHEARSAL:-}" ]]; then
  # The CPU stand-ins: the same commands at sizes 2 cores finish in a few minutes (B0 alone
  # compiles for a minute there, so bench and depthwise time the tiny proxy). Memory
  # fractions mean nothing on a CPU, so the failure-stop path is rehearsed with a loss that
  # diverges in every trial, and two workers search a one-block baseline.
  MODE=rehearsal BENCH="$TINY 32 8 2" TIMM_FLAGS=""
  FAIL_ENV="EFFSEARCH_SUITE_SEARCH=diverge"
  FAIL_TRAIN="stem8-mb_r1_k3_s1_e1_c8-head16 --dataset digits --resolution 8 --lr 1e30"
  FAIL_EXPECT="failed:training diverged"
  TWO="EFFSEARCH_SUITE_SEARCH=tiny|benchmarks/gpu_search.py"
  L=(25 55 40 55 45 25 45 30 70 50)  # 440 s, within .ci/run's 480; measured 141 s in all
else
  MODE=gpu BENCH="efficientnet-b0 224 256 20" TIMM_FLAGS="--require-cuda"
  # 0.0005 of an H200 is about 70 MB: digits at 224 px alone is 270 MB.
  FAIL_ENV="EFFSEARCH_SUITE_SEARCH=oom XLA_PYTHON_CLIENT_MEM_FRACTION=0.0005"
  FAIL_ENV+=" XLA_PYTHON_CLIENT_PREALLOCATE=true"
  FAIL_TRAIN="$TINY --dataset digits --resolution 224"
  FAIL_EXPECT="failed:out of memory"
  TWO="-|experiments/quickstart.py"
  # B0 at 224 px compiles for about 80 s cold; depthwise compiles it once more (shift).
  L=(15 40 20 35 115 45 90 20 30 60)  # 470 s, with setup within the 8-minute budget
fi
read -r B_MODEL B_RES B_BATCH B_STEPS <<<"$BENCH"
IFS='|' read -r TWO_ENV TWO_CONFIG <<<"$TWO"
[[ $TWO_ENV == - ]] && TWO_ENV="" || TWO_ENV="$TWO_ENV "

# name|limit|expectation (benchmarks/gpu_steps.py record)|environment|arguments of $PY
steps=(
  "env|${L[0]}|json|-|-m search.cli env --workers 2 --json"
  "proxy_cold|${L[1]}|json|EFFSEARCH_CACHE_DIR=$WORK/cache-proxy|$PROXY"
  "proxy_warm|${L[2]}|json|EFFSEARCH_CACHE_DIR=$WORK/cache-proxy|$PROXY"
  "autotune0|${L[3]}|json|EFFSEARCH_CACHE_DIR=$WORK/cache-autotune0 XLA_FLAGS=--xla_gpu_autotune_level=0|$PROXY"
  "bench|${L[4]}|json|EFFSEARCH_CACHE_DIR=$WORK/cache-bench|-m search.cli bench --model $B_MODEL --resolution $B_RES --batch $B_BATCH --steps $B_STEPS --json"
  "timm|${L[5]}|json|-|benchmarks/gpu_steps.py timm efficientnet-b0 $B_RES $B_BATCH $B_STEPS $TIMM_FLAGS"
  "depthwise|${L[6]}|json|EFFSEARCH_CACHE_DIR=$WORK/cache-bench|benchmarks/gpu_steps.py depthwise $BENCH"
  "oom_train|${L[7]}|$FAIL_EXPECT|EFFSEARCH_CACHE_DIR=$WORK/cache-oom $FAIL_ENV|-m search.cli train $FAIL_TRAIN --epochs 1 --json"
  "oom_search|${L[8]}|stopped|EFFSEARCH_CACHE_DIR=$WORK/cache-oom $FAIL_ENV|-m search.cli search benchmarks/gpu_search.py --trials 8 --workdir $WORK/oom_search"
  "two_workers|${L[9]}|exit0|${TWO_ENV}EFFSEARCH_CACHE_DIR=$WORK/cache-workers|-m search.cli search $TWO_CONFIG --workers 2 --trials 2 --workdir $WORK/two_workers"
)

if [[ -n "${DRY_RUN:-}" ]]; then
  for step in "${steps[@]}"; do
    IFS='|' read -r name limit expect envs args <<<"$step"
    [[ $envs == - ]] && envs="" || envs="$envs "
    echo "$name (${limit}s, $expect): $envs$PY $args"
  done
  exit 0
fi

mkdir -p "$OUT" "$WORK"
[[ -n "${KEEP_WORK:-}" ]] || trap 'rm -rf "$WORK"' EXIT  # caches and journals: packed or moot
rm -f "$OUT/summary.md" "$OUT/results.tar.gz"
LOG="$WORK/log.txt"
{
  echo "# GPU suite ($MODE), $(date -u +%Y-%m-%dT%H:%MZ)"
  echo
  echo "source $(git rev-parse --short HEAD 2>/dev/null || echo "(no git)"); $("$PY" -V 2>&1)"
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null \
    | sed 's/^/gpu: /'
} >"$WORK/header.md"

pack() {  # summary.md and the archive, after every step: a run cut short keeps what it has
  { cat "$WORK/header.md"; echo; cat "$WORK/status.md" 2>/dev/null
    echo "| step | seconds | exit | ok | result |"; echo "|---|---|---|---|---|"
    cat "$WORK/rows.md" 2>/dev/null; } >"$OUT/summary.md"
  tar -czf "$OUT/results.tar.gz.part" -C "$WORK" --exclude='./cache-*' --exclude='./site' . \
    && mv "$OUT/results.tar.gz.part" "$OUT/results.tar.gz"
}

fail_setup() {
  echo "gpu_suite: $1" | tee -a "$LOG" >&2
  echo "setup failed: $1" >"$WORK/status.md"
  pack
  exit 1
}

if compgen -G ".whl/*.whl" >/dev/null; then
  # Pure-python wheels for what the host lacks, installed beside it, not into it. Without a
  # working pip, unpacking them is the same install (they hold no scripts that steps need).
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$WORK/site" .whl/*.whl >>"$LOG" 2>&1 \
    || "$PY" -c 'import sys, zipfile; [zipfile.ZipFile(w).extractall(sys.argv[1])
                 for w in sys.argv[2:]]' "$WORK/site" .whl/*.whl 2>>"$LOG" \
    || fail_setup "could not install .whl/*.whl into $WORK/site (see log.txt)"
  export PYTHONPATH="$PYTHONPATH:$WORK/site"
fi
if ! optuna=$("$PY" -c 'import optuna; print(optuna.__version__)' 2>>"$LOG"); then
  fail_setup "optuna is not importable by $PY: run benchmarks/fetch_wheels.sh where pip can \
download, and bring the .whl/ folder it fills along with the source tree"
fi
echo "optuna $optuna" >>"$WORK/header.md"

failed=0
for step in "${steps[@]}"; do
  IFS='|' read -r name limit expect envs args <<<"$step"
  [[ $envs == - ]] && envs=""
  echo "== $name (${limit}s): $envs $PY $args" | tee -a "$LOG"
  start=$(date +%s)
  # shellcheck disable=SC2086  # envs and args are word lists on purpose
  env $envs timeout -k 10 "$limit" "$PY" $args >"$WORK/$name.stdout" 2>"$WORK/$name.stderr"
  code=$?
  took=$(( $(date +%s) - start ))
  cat "$WORK/$name.stderr" >>"$LOG"
  echo "   exit $code after ${took}s" | tee -a "$LOG"
  logs=()
  [[ -d "$WORK/$name/logs" ]] && logs=(--logs "$WORK/$name/logs")
  "$PY" benchmarks/gpu_steps.py record "$name" "$expect" "$code" "$took" "$WORK" "${logs[@]}" \
    2>>"$LOG" || failed=$((failed + 1))
  pack
done
echo "$failed of ${#steps[@]} steps did not meet their expectation" >"$WORK/status.md"
pack
echo
cat "$OUT/summary.md"
[[ $failed == 0 ]]
