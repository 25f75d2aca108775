#!/usr/bin/env bash
# Fetches into .whl/ (git-ignored) the wheels a bare GPU host lacks for benchmarks/gpu_suite.sh:
# optuna and colorlog. Both are pure Python (py3-none-any), so one download serves any Python
# 3 and platform; they are all a journal study imports beyond the host's numpy, scipy, tqdm and
# PyYAML (sqlalchemy and alembic are imported only for an RDB storage). The suite installs
# them into a temporary folder when .whl/ is present.
#
#   bash benchmarks/fetch_wheels.sh                      # the versions in .venv (else 5.1.0, 6.12.0)
#   bash benchmarks/fetch_wheels.sh optuna==5.1.0 colorlog==6.12.0
#
# PYTHON (default python3) runs pip; VENV_PYTHON (default .venv/bin/python) gives the pins.
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
VENV_PY="${VENV_PYTHON:-.venv/bin/python}"

pin() {  # NAME DEFAULT: NAME==<version in the project's venv>, else NAME==DEFAULT
  local version=""
  if [[ -x "$VENV_PY" ]]; then
    version=$("$VENV_PY" -c "import importlib.metadata as m; print(m.version('$1'))" \
      2>/dev/null || true)
  fi
  echo "$1==${version:-$2}"
}

if (($#)); then
  wanted=("$@")
else
  wanted=("$(pin optuna 5.1.0)" "$(pin colorlog 6.12.0)")
fi
mkdir -p .whl
for spec in "${wanted[@]}"; do  # one version of each: two would stop the install there
  rm -f ".whl/${spec%%[=<>!~]*}-"*.whl
done
"$PY" -m pip download -q --no-deps --only-binary=:all: -d .whl "${wanted[@]}"
echo "fetched into .whl/ (${wanted[*]}):"
for wheel in .whl/*.whl; do
  note=""
  [[ $wheel == *-none-any.whl ]] || note=" (built for this machine's Python and platform only)"
  echo "  $wheel, $(stat -c %s "$wheel") bytes$note"
done
