"""The benchmark scripts that run where the tests cannot: checked for syntax and arguments."""

import dataclasses
import importlib.util
import json
import os
import shlex
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from search.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]
SUITE = ROOT / "benchmarks" / "gpu_suite.sh"


STEPS = ["env", "proxy_cold", "proxy_warm", "autotune0", "bench", "timm", "depthwise",
         "oom_train", "oom_search", "two_workers"]  # what they decide, cheapest first
GPU_BUDGET_S = 8 * 60 - 10  # the suite's promise, less its setup (wheels, import check)


def _suite_steps(rehearsal: bool = False) -> list[tuple[str, int, str, dict, list[str]]]:
    """The DRY_RUN listing: (name, limit, expectation, environment, arguments of python)."""
    env = {"DRY_RUN": "1", "PATH": "/usr/bin:/bin", "PYTHON": "python3", "TMPDIR": "/tmp"}
    if rehearsal:
        env["REHEARSAL"] = "1"
    done = subprocess.run(["bash", str(SUITE)], capture_output=True, text=True, check=True,
                          env=env)
    steps = []
    for line in done.stdout.splitlines():
        head, command = line.split(": ", 1)
        name, rest = head.split(" (")
        limit, expect = rest.rstrip(")").split(", ")
        words = shlex.split(command)
        variables = dict(w.split("=", 1) for w in words[:words.index("python3")])
        steps.append((name, int(limit.rstrip("s")), expect, variables,
                      words[words.index("python3") + 1:]))
    return steps


def test_gpu_suite_is_valid_bash_and_fits_its_budget():
    subprocess.run(["bash", "-n", str(SUITE)], check=True)
    for rehearsal in (False, True):
        assert [s[0] for s in _suite_steps(rehearsal)] == STEPS
    assert sum(s[1] for s in _suite_steps()) <= GPU_BUDGET_S


def test_gpu_suite_cold_and_warm_steps_share_only_their_own_caches():
    """The warm proxy reuses the cold one's cache; autotune level 0 and B0 start cold."""
    steps = {s[0]: s for s in _suite_steps()}
    cache = {name: s[3].get("EFFSEARCH_CACHE_DIR") for name, s in steps.items()}
    assert cache["proxy_cold"] == cache["proxy_warm"]
    assert len({cache["proxy_cold"], cache["autotune0"], cache["bench"]}) == 3
    assert cache["depthwise"] == cache["bench"]  # "auto"'s implementation is a cache hit
    assert steps["autotune0"][3]["XLA_FLAGS"] == "--xla_gpu_autotune_level=0"
    assert steps["autotune0"][4] == steps["proxy_cold"][4] == steps["proxy_warm"][4]
    for name in ("oom_train", "oom_search"):
        assert float(steps[name][3]["XLA_PYTHON_CLIENT_MEM_FRACTION"]) < 0.01
        assert steps[name][3]["XLA_PYTHON_CLIENT_PREALLOCATE"] == "true"
    assert steps["oom_train"][2] == "failed:out of memory"
    assert steps["oom_search"][2] == "stopped"


def _all_steps():
    return [("gpu", s) for s in _suite_steps()] + [("rehearsal", s) for s in _suite_steps(True)]


def _load(name: str):
    """A benchmarks/ script as a module (benchmarks/ is no package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "benchmarks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("mode_step", _all_steps(), ids=lambda m: f"{m[0]}-{m[1][0]}")
def test_gpu_suite_steps_name_real_commands(mode_step):
    """Each step's effsearch or helper arguments parse, and the configs it names exist."""
    _, (_, _, _, variables, argv) = mode_step
    if argv[0] == "-m":
        assert argv[1] == "search.cli"
        args = build_parser().parse_args(argv[2:])
        if args.command == "search":
            assert (ROOT / args.config).is_file(), args.config
    else:
        assert argv[0] == "benchmarks/gpu_steps.py"
        assert _load("gpu_steps").build_parser().parse_args(argv[1:]).command in (
            "timm", "depthwise")
    if "EFFSEARCH_SUITE_SEARCH" in variables:
        assert variables["EFFSEARCH_SUITE_SEARCH"] in _load("gpu_search").KINDS


@pytest.mark.parametrize("kind", ["oom", "diverge", "tiny"])
def test_gpu_search_configs_build(kind, monkeypatch):
    monkeypatch.setenv("EFFSEARCH_SUITE_SEARCH", kind)
    config = _load("gpu_search").get_config()
    assert config.halving is None and config.proxy.epochs == 1
    assert (config.proxy.learning_rate == 1e30) == (kind == "diverge")


@pytest.mark.parametrize(("expect", "rc", "stdout", "stderr", "problem"), [
    ("json", 0, '{"skipped": "torch not installed"}', "", None),
    ("json", 0, '{"impl": "xla"}\n{"impl": "shift"}\n', "", None),
    ("json", 0, "", "", "no JSON on stdout"),
    ("json", 124, '{"impl": "xla"}', "", "timed out (exit 124)"),
    ("json", 2, "", "effsearch: error: bad\n", "exit 2: effsearch: error: bad"),
    ("failed:out of memory", 0, '{"status": "failed", "reason": "out of memory: RESOURCE"}',
     "", None),
    ("failed:out of memory", 0, '{"status": "failed", "reason": "training diverged"}', "",
     "reason is not one line starting 'out of memory': training diverged"),
    ("failed:out of memory", 0, '{"status": "ok", "reason": null}', "",
     "status is not 'failed'"),
    ("stopped", 1, "", "trial 0 failed\neffsearch search: stopped: 5 trainings failed\n", None),
    ("stopped", 1, "", "Traceback (most recent call last):\neffsearch search: stopped: x\n",
     "a traceback on stderr"),
    ("stopped", 0, "", "done\n", "exit 0, not 1"),
    ("exit0", 0, "", "next: effsearch front\n", None),
])
def test_gpu_steps_record_checks_each_expectation(tmp_path, expect, rc, stdout, stderr,
                                                  problem):
    (tmp_path / "s.stdout").write_text(stdout)
    (tmp_path / "s.stderr").write_text(stderr)
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "w.worker0.log").write_text("a\nworker done: 1 trained\n")
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "gpu_steps.py"), "record",
                           "s", expect, str(rc), "7", str(tmp_path), "--logs",
                           str(tmp_path / "logs")], capture_output=True, text=True)
    assert done.returncode == (problem is not None), done.stderr
    record = json.loads(done.stdout)  # one line: the step's result as soon as it exists
    assert record == json.loads((tmp_path / "s.json").read_text())
    assert (record["ok"], record["problem"], record["seconds"]) == (problem is None, problem, 7)
    assert record["logs"] == {"w.worker0.log": ["a", "worker done: 1 trained"]}
    row = (tmp_path / "rows.md").read_text()
    assert row.count("\n") == 1 and row.startswith(f"| s | 7 | {rc} | ")


FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for python3 in every step; the suite's own bookkeeping runs the real one.
if [[ "$1" == benchmarks/gpu_steps.py && "$2" == record ]]; then exec {python} "$@"; fi
if [[ "$1" == -V ]]; then echo "Python 3.fake"; exit 0; fi
if [[ "$1" == -c ]]; then {optuna}; fi
case "$*" in
  *"search benchmarks/gpu_search.py"*) echo "trial 0 failed" >&2
     echo "effsearch search: stopped: 5 trainings in a row failed" >&2; exit 1 ;;
  *"search "*) echo "next: effsearch front" >&2 ;;
  *"train "*" --epochs 1 "*) echo '{{"status": "failed", "reason": "out of memory: RESOURCE"}}' ;;
  *) echo '{{"status": "ok", "val_top1": 0.5, "curve": [{{"epoch": 1}}]}}' ;;
esac
"""


def _fake_python(tmp_path: Path, optuna: str) -> Path:
    path = tmp_path / "python3"
    path.write_text(FAKE_PYTHON.format(python=sys.executable, optuna=optuna))
    path.chmod(0o755)
    return path


def _run_suite(tmp_path: Path, python: Path) -> subprocess.CompletedProcess:
    env = {"PATH": os.environ["PATH"], "PYTHON": str(python), "OUT": str(tmp_path / "out"),
           "TMPDIR": str(tmp_path)}
    return subprocess.run(["bash", str(SUITE)], capture_output=True, text=True, env=env,
                          timeout=120)


def test_gpu_suite_records_every_step_and_packs_one_archive(tmp_path):
    """The plumbing, with a stand-in python: a JSON line per step, summary.md, one tar."""
    done = _run_suite(tmp_path, _fake_python(tmp_path, 'echo 5.1.0; exit 0'))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-2000:]
    records = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert [r["step"] for r in records] == STEPS and all(r["ok"] for r in records)
    assert "exit 0 after" in done.stdout
    out = tmp_path / "out"
    assert sorted(p.name for p in out.iterdir()) == ["results.tar.gz", "summary.md"]
    summary = (out / "summary.md").read_text()
    rows = [line.split(" | ") for line in summary.splitlines() if line.startswith("| ")]
    assert "0 of 10 steps did not meet" in summary
    assert [(r[0], r[3]) for r in rows[1:]] == [(f"| {s}", "ok") for s in STEPS]
    with tarfile.open(out / "results.tar.gz") as tar:
        names = {Path(n).name for n in tar.getnames()}
    assert {"log.txt", "rows.md"} | {f"{s}.json" for s in STEPS} <= names
    assert not [p for p in tmp_path.glob("effsearch-gpu-suite.*")]  # its temporary folder


def test_gpu_suite_stops_at_once_without_optuna(tmp_path):
    done = _run_suite(tmp_path, _fake_python(tmp_path, "exit 1"))
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith(
        "gpu_suite: optuna is not importable")
    assert "benchmarks/fetch_wheels.sh" in done.stderr
    assert "setup failed: optuna" in (tmp_path / "out" / "summary.md").read_text()


def test_fetch_wheels_is_valid_bash():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "fetch_wheels.sh")], check=True)


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
    """The replay benchmark end to end on the synthetic table of tests/test_replay.py, with
    the search its header describes."""
    from test_replay import config, synthetic_table

    from search.replay import table_header

    base = config()
    part = dataclasses.replace(base, search=dataclasses.replace(base.search, phi=1.0),
                               proxy=dataclasses.replace(base.proxy, epochs=9))
    path = tmp_path / "t.jsonl"
    synthetic_table(2.0, epochs=9).save(path, **table_header(part, tolerance=0.5))
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


def test_search_efficiency_replays_the_search_its_table_header_describes(tmp_path):
    """Baseline, proxy, rounding and tolerance come from the table (the MNIST and CIFAR-10
    tables differ in all four), not from one dataset's setup."""
    from test_replay import config, synthetic_table

    from search.replay import Table, table_header

    bench = _load("search_efficiency")
    part = config(proxy=dataclasses.replace(config().proxy, epochs=6, flip=False))
    path = tmp_path / "t.jsonl"
    synthetic_table(4.0, epochs=6).save(path, **table_header(part, tolerance=0.25))
    table = Table.load(path)
    search = bench.table_search(table, trials=7)
    assert search.search.baseline == part.search.baseline and search.search.growth == 4.0
    assert search.search.tolerance == 0.25 and search.trials == 7
    assert search.search.channel_divisor == part.search.channel_divisor
    assert search.proxy == dataclasses.replace(part.proxy, seed=0)
    # SearchConfig's halving, else one rung at a third of the table's 6 epochs.
    assert bench.default_halving(table) == (bench.DEFAULTS["halving"]
                                            or bench.Halving(min_epochs=2, eta=3))
    Table(table.rows).save(path)  # a table from before headers carried the search
    with pytest.raises(SystemExit, match="export it again"):
        bench.table_search(Table.load(path), trials=7)


def test_forecast_fits_two_factors_and_falls_back_with_one(tmp_path):
    """The forecast kind fits the search's trainings at 2x and 4x and ranks the 8x directions;
    with trainings at 2x only it keeps the search's best and reports no Spearman."""
    from test_factor_rungs import table_at
    from test_replay import config

    from search.replay import ReplayOutcome, replay_tolerance

    module = _load("factor_efficiency")
    base = config()
    table = table_at((2.0, 4.0, 8.0), [(0.2, 0.6, 0.2), (0.2, 0.45, 0.35), (0.2, 0.3, 0.5)])
    epochs = base.proxy.epochs
    scores = tuple((tuple(r["shares"]), r["factor"], r["val_top1"], epochs, 0)
                   for r in table.rows if r["factor"] in (2.0, 4.0))
    best = max(scores, key=lambda s: s[2])[0]
    fitted = ReplayOutcome(recommended=best, regret=0.0, trainings=len(scores), seconds=0.0,
                           elapsed_s=0.0, full=(), trace=(), scores=scores)
    pick, extra, rho = module._forecast(fitted, table, base, 8.0, replay_tolerance(base))
    assert rho is not None and -1 <= rho <= 1 and extra > 0
    assert pick in {d.shares for d in table.directions(8.0, replay_tolerance(base))}
    low = dataclasses.replace(fitted, scores=tuple(s for s in scores if s[1] == 2.0))
    pick, _, rho = module._forecast(low, table, base, 8.0, replay_tolerance(base))
    assert rho is None and pick == best

def test_target_factor_compares_the_six_ways_to_a_direction(tmp_path):
    """`--target-factor`: six methods on a synthetic table at 2x, 4x and 8x whose best
    direction moves with the factor; one JSON array on stdout and nothing else."""
    from test_factor_rungs import table_at
    from test_replay import config

    from search.replay import Table, table_header

    base = config()
    part = dataclasses.replace(base, search=dataclasses.replace(base.search, phi=1.0))
    factors = (2.0, 4.0, 8.0)
    table = table_at(factors, [(0.2, 0.6, 0.2), (0.2, 0.45, 0.35), (0.2, 0.3, 0.5)])
    path = tmp_path / "t.jsonl"
    Table(table.rows).save(path, **table_header(part, tolerance=0.5))
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"),
                           "--table", str(path), "--target-factor", "8", "--seeds", "3",
                           "--trials", "8", "--json", "--jobs", "1"],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    import json

    rows = json.loads(done.stdout)
    # The six of the factor issue, then issue 27's noise-aware pick and promotions, 2x and
    # with factor rungs.
    assert [r["kind"] for r in rows] == ["2x", "2x+ladder", "factors", "target-only", "paper",
                                         "forecast", "2x", "2x", "2x", "factors"]
    by = {r["method"]: r for r in rows}
    assert list(by)[-4:] == ["2x+noise", "2x+band", "2x+band+noise", "factors+band"]
    for noisy, search in (("2x+noise", "2x"), ("2x+band+noise", "2x+band")):
        assert by[noisy]["second_seeds_mean"] >= 0
        assert by[noisy]["compute_mean"] >= by[search]["compute_mean"]
    for r in rows:
        assert {"method", "seeds", "compute_mean", "within_se_share", "target_regret_mean",
                "target_regret_se"} <= set(r) and r["seeds"] == 3
        assert 0 <= r["within_se_share"] <= 1 and 0 <= r["target_regret_mean"] <= 1
        assert 0 <= r["within_se_share_all_seeds"] <= 1
    assert by["paper"]["compute_mean"] == 0 and by["target-only"]["compute_vs_target_only"] == 1
    # The ladder and the factor rungs train at larger factors than the search they follow.
    assert by["2x+ladder"]["compute_mean"] > by["2x"]["compute_mean"]
    assert by["factors"]["compute_mean"] > by["2x"]["compute_mean"]
    assert by["factors+band"]["compute_mean"] > by["2x+band"]["compute_mean"]
    forecast = by["forecast"]
    # Whether a replay reaches two factors in 8 trials is the sampler's (Optuna 4.0 and 5 differ
    # here); a replay that does not falls back to its search's best (tested below).
    assert 0 <= forecast["forecast_fitted"] <= 3
    if forecast["forecast_fitted"]:
        assert -1 <= forecast["forecast_spearman"] <= 1
    # The same replays refitted at other thresholds on stopped trainings; the default's is
    # the forecast row itself.
    (default,) = [t for t in forecast["thresholds"]
                  if t["min_fraction"] == forecast["min_fraction"]]
    assert default["fitted"] == forecast["forecast_fitted"]
    assert default["forecast_spearman"] == forecast["forecast_spearman"]
    assert default["within_se_share"] == forecast["within_se_share"]
    assert 0 < forecast["noise_ceiling"] <= 1
    low, high = forecast["noise_ceiling_interval"]
    assert low <= high
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "search_efficiency.py"),
                          "--table", str(path), "--target-factor", "16"],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "rows at 2x, 4x, 8x only" in bad.stderr
