#!/usr/bin/env bash
# What is left of the CIFAR-10 trainings (issues 23 and 26), in order, each step resumable:
# run it again after a stop and it goes on where it was. About 8 hours of the 2-core CPU from
# the start of the table's 8x part.
#   1. the direction table's 8x part (experiments/build_direction_table.sh), then its export;
#   2. the replay benchmark at 8x (issue 26 section 3; minutes), JSON in results/factors/;
#   3. the factor search once for real (issue 26; experiments/cifar10_factors.py; about an
#      hour, so it comes before the ladder's two);
#   4. part 4's ladder of the default search (issue 23): two `effsearch validate` commands
#      share its rows (a row is claimed by one of them), the table's rows reused.
# Usage: EFFSEARCH_DATA_DIR=../shared/data nohup setsid bash experiments/finish_cifar10.sh \
#            >> experiments/results/cifar10/logs/finish.out 2>&1 < /dev/null &
set -euo pipefail
cd "$(dirname "$0")/.."
export BIN=${BIN:-.venv/bin}
R=experiments/results/cifar10
step() { echo "== $(date -u +%FT%TZ) $*"; }

step "1. the table's 8x part"
bash experiments/build_direction_table.sh cifar10 8x-s0 8x-s1

step "2. the replay benchmark at 8x"
mkdir -p experiments/results/factors
if [[ ! -s experiments/results/factors/cifar10-target8.json ]]; then
  "$BIN/python" benchmarks/search_efficiency.py --table "$R/direction_table.jsonl" \
    --target-factor 8 --seeds 30 --jobs 2 --json > "$R/logs/target8.json.part" \
    2> "$R/logs/target8.log"
  mv "$R/logs/target8.json.part" experiments/results/factors/cifar10-target8.json
fi

step "3. the factor search once for real"
"$BIN/effsearch" search experiments/cifar10_factors.py --workdir "$R" --workers 2 \
  2>&1 | tee -a "$R/logs/factors.log"
step "4. part 4: the default search's ladder at 4x and 8x, 3 seeds"
if [[ ! -s "$R/ladder.json" ]]; then
  ladder=("$BIN/effsearch" validate cifar10-directions --workdir "$R" --factors 4,8 --seeds 3
          --top 1 --reuse "$R/direction_table.jsonl" --json)
  "${ladder[@]}" > /dev/null 2>> "$R/logs/ladder-1.log" &
  other=$!
  # Whichever way this script ends, the other command does not train on unattended.
  trap 'kill "$other" 2> /dev/null || true' EXIT
  "${ladder[@]}" > "$R/logs/ladder.json.part" 2>> "$R/logs/ladder-0.log"
  wait "$other"
  trap - EXIT
  mv "$R/logs/ladder.json.part" "$R/ladder.json"
fi

step "done"
