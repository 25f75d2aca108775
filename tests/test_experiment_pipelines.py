"""The experiment pipelines of experiments/ run their steps in order, pass each command
arguments that parse, and resume: a step whose result is written is not run again."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from search.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _tree(tmp_path: Path) -> tuple[Path, dict[str, str]]:
    """A copy of the pipeline's scripts, with stand-in `effsearch` and `python` in BIN that
    log their arguments (one line each) and print a JSON value on stdout."""
    tree = tmp_path / "repo"
    (tree / "experiments").mkdir(parents=True)
    for name in ("finish_cifar10.sh", "build_direction_table.sh"):
        shutil.copy(ROOT / "experiments" / name, tree / "experiments" / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("effsearch", "python"):
        fake = bin_dir / name
        fake.write_text(f'#!/usr/bin/env bash\necho "{name} $*" >> "$CALLS"\necho "[]"\n')
        fake.chmod(0o755)
    env = {**os.environ, "BIN": str(bin_dir), "CALLS": str(tmp_path / "calls")}
    return tree, env


def test_finish_cifar10_runs_its_steps_in_order_and_resumes(tmp_path):
    tree, env = _tree(tmp_path)
    script = tree / "experiments" / "finish_cifar10.sh"
    subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True)
    calls = Path(env["CALLS"]).read_text().splitlines()
    commands = [line.split()[:3] for line in calls]
    assert commands[0] == ["effsearch", "search", "experiments/cifar10_direction_table.py"]
    assert ["python", "benchmarks/search_efficiency.py", "--table"] in commands
    factors = commands.index(["effsearch", "search", "experiments/cifar10_factors.py"])
    ladder = [i for i, line in enumerate(calls) if " validate " in line]
    assert len(ladder) == 2  # two commands share the ladder's rows
    assert factors < min(ladder) and max(ladder) == len(calls) - 1
    for i in [*ladder, factors]:
        build_parser().parse_args(calls[i].split()[1:])  # each parses as effsearch's CLI
    results = tree / "experiments" / "results"
    assert (results / "cifar10" / "ladder.json").read_text().strip() == "[]"
    assert (results / "factors" / "cifar10-target8.json").read_text().strip() == "[]"

    # Again: the written results are kept, their steps skipped; the searches resume.
    Path(env["CALLS"]).unlink()
    subprocess.run(["bash", str(script)], env=env, check=True, capture_output=True)
    again = Path(env["CALLS"]).read_text()
    assert " validate " not in again and "search_efficiency" not in again
    assert "cifar10_factors.py" in again and "cifar10_direction_table.py" in again


def test_finish_cifar10_stops_at_a_failed_step(tmp_path):
    tree, env = _tree(tmp_path)
    failing = Path(env["BIN"]) / "python"
    failing.write_text('#!/usr/bin/env bash\necho "python $*" >> "$CALLS"\n'
                       '[[ $1 == benchmarks/* ]] && exit 3\nexit 0\n')
    done = subprocess.run(["bash", str(tree / "experiments" / "finish_cifar10.sh")], env=env,
                          capture_output=True)
    assert done.returncode == 3
    assert " validate " not in Path(env["CALLS"]).read_text()
    assert not (tree / "experiments" / "results" / "factors" / "cifar10-target8.json").exists()


def test_a_failed_ladder_command_stops_the_other_one(tmp_path):
    """Two `validate` commands share the ladder; when one fails, the script ends without the
    ladder's file and does not leave the other training."""
    import time

    tree, env = _tree(tmp_path)
    fake = Path(env["BIN"]) / "effsearch"
    # The one whose output is thrown away (started in the background) trains on, its pid
    # recorded; the other fails once it is.
    fake.write_text('#!/usr/bin/env bash\necho "effsearch $*" >> "$CALLS"\n'
                    '[[ $1 == validate ]] || exit 0\n'
                    'if [[ $(readlink /proc/$$/fd/1) == /dev/null ]]; then\n'
                    '  echo $$ > "$CALLS.pid"; exec sleep 60\nfi\n'
                    'until [[ -s "$CALLS.pid" ]]; do sleep 0.05; done\nexit 4\n')
    done = subprocess.run(["bash", str(tree / "experiments" / "finish_cifar10.sh")], env=env,
                          capture_output=True, timeout=50)
    assert done.returncode == 4
    assert not (tree / "experiments" / "results" / "cifar10" / "ladder.json").exists()
    status = Path(f"/proc/{int(Path(env['CALLS'] + '.pid').read_text())}/status")
    deadline = time.monotonic() + 10  # a signal sent is not yet a process ended
    while status.exists() and "zombie" not in status.read_text() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not status.exists() or "zombie" in status.read_text()
