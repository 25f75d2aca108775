"""The benchmark scripts that run where the tests cannot: checked for syntax and arguments."""

import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from search.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"


def _suite_steps() -> list[tuple[str, int, list[str]]]:
    done = subprocess.run(["bash", str(SUITE)], capture_output=True, text=True, check=True,
                          env={"DRY_RUN": "1", "PATH": "/usr/bin:/bin", "PYTHON": "python3"})
    steps = []
    for line in done.stdout.splitlines():
        head, command = line.split(": ", 1)
        name, limit = head.split(" (")
        steps.append((name, int(limit.rstrip("s)")), shlex.split(command)[1:]))
    return steps


def test_gpu_suite_is_valid_bash_and_fits_its_budget():
    subprocess.run(["bash", "-n", str(SUITE)], check=True)
    steps = _suite_steps()
    assert {"bench_224_cold", "bench_32_cold", "depthwise", "quickstart"} <= {
        s[0] for s in steps}
    assert sum(limit for _, limit, _ in steps) <= 8 * 60  # the suite's promise


@pytest.mark.parametrize("step", _suite_steps(), ids=lambda s: s[0])
def test_gpu_suite_steps_name_real_commands(step):
    """Each step's effsearch arguments parse, and each script it runs exists."""
    _, _, argv = step
    if argv[0] == "-m":
        assert argv[1] == "search.cli"
        build_parser().parse_args(argv[2:])
    else:
        assert (ROOT / argv[0]).is_file(), argv[0]


def test_trial_overhead_journal_mode(tmp_path):
    """`--journal` sums init, compile and wall time over a study's trials."""
    import optuna
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    path = tmp_path / "j.journal"
    study = optuna.create_study(study_name="s", storage=JournalStorage(
        JournalFileBackend(str(path))))
    for wall, compile_s, init_s in ((10.0, 4.0, 1.0), (30.0, 2.0, 1.0)):
        trial = study.ask()
        for key, value in (("wall_s", wall), ("compile_s", compile_s), ("init_s", init_s),
                           ("images_per_s", 100.0)):
            trial.set_user_attr(key, value)
        study.tell(trial, 0.5)
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "trial_overhead.py"),
                           "--journal", str(path), "--study", "s"],
                          capture_output=True, text=True, check=True)
    assert '"compile_share": 0.15' in done.stdout and '"init_share": 0.05' in done.stdout


@pytest.mark.slow
def test_search_efficiency_reports_every_method_on_a_table(tmp_path):
    """The replay benchmark end to end on the synthetic table of tests/test_replay.py."""
    from test_replay import synthetic_table

    path = tmp_path / "t.jsonl"
    synthetic_table(2.0, epochs=9).save(path)  # the MNIST proxy's 9 epochs
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"),
                           "--table", str(path), "--methods", "random,tpe", "--seeds", "2",
                           "--trials", "5", "--json", "--pareto", "--plot",
                           str(tmp_path / "p.png")], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    rows = json.loads(done.stdout)
    assert (tmp_path / "p.png").stat().st_size > 10_000
    assert len(rows) == 8  # 2 samplers x (with, without halving) x (1, 4 workers)
    assert sum(r["default"] for r in rows) == 1
    for r in rows:
        assert {"method", "seeds", "grid_trainings", "trainings_to_best_mean",
                "final_regret_mean", "final_regret_se"} <= set(r)
        assert r["seeds"] == 2 and r["grid_trainings"] == 232
        # The grid is not among the methods: it is replayed once for its spend, which its
        # points that round to one network share.
        assert 0 < r["grid_trainings_spent"] < 232
        assert 0 <= r["final_regret_mean"] <= 1 and 0 <= r["hypervolume_gap_mean"] <= 1
        assert 0 <= r["retrained_mean"] < r["trainings_mean"]
        assert ("halving" in r["method"]) or r["retrained_mean"] == 0
    assert len({r["grid_trainings_spent"] for r in rows}) == 1
    assert min(r["final_regret_mean"] for r in rows) < 1  # some method recommends something
