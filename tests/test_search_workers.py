"""Worker processes on one study: journal file, PostgreSQL, kill -9 and resume, user errors."""

import json
import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState
from toys import TINY_ARCH

from search import storage
from search.cli import main

pytestmark = pytest.mark.slow  # subprocess workers, kills and PostgreSQL: make test-slow

EFFSEARCH = str(Path(sys.executable).parent / "effsearch")
ARCH = TINY_ARCH


def write_config(path: Path, name: str, trials: int, **extra: str) -> Path:
    # Not matched in cost: at 8 px a toy's directions near 2x round to a few networks, and
    # these tests need distinct trials that take time to train (to be killed mid-trial);
    # no halving, so that every trial trains in full and counts as complete.
    options = "".join(f", {k}={v}" for k, v in {"halving": "None", "grace_s": "6",
                                                **extra}.items())
    path.write_text(textwrap.dedent(f"""
        from search.config import CoefficientSearch, SearchConfig
        from trainers.proxy import ProxyConfig

        def get_config():
            return SearchConfig(
                name="{name}", search=CoefficientSearch(baseline="{ARCH}", match=None,
                                                       channel_divisor=2),
                proxy=ProxyConfig(dataset="digits", epochs=2, batch_size=128, resolution=8),
                sampler="random", trials={trials}, startup_trials=2,
                heartbeat_s=0.5{options})
        """))
    return path


def load(url: str, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=storage.open_storage(url, create=False))


def running_trial(url: str, name: str, *, after_a_complete_one: bool = False,
                  timeout_s: float = 300) -> optuna.trial.FrozenTrial | None:
    """The first trial seen training (its heartbeat and worker recorded), or None in time."""
    deadline = time.time() + timeout_s
    while time.time() < deadline:
        time.sleep(0.2)
        try:
            trials = load(url, name).get_trials()
        except Exception:  # not created yet
            continue
        running = [t for t in trials if t.state == TrialState.RUNNING
                   and "heartbeat" in t.user_attrs and "worker_pid" in t.user_attrs]
        if running and (not after_a_complete_one
                        or any(t.state == TrialState.COMPLETE for t in trials)):
            return running[0]
    return None


def check_counts(study: optuna.Study, trials: int) -> None:
    """Exactly `trials` complete, each enqueued design point run once, nothing left running."""
    all_trials = study.get_trials()
    complete = [t for t in all_trials if t.state == TrialState.COMPLETE
                and "duplicate_of" not in t.user_attrs]  # a reused result is no training
    assert len(complete) == trials
    assert not [t for t in all_trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
    params = [tuple(sorted(t.params.items())) for t in complete]
    assert len(set(params)) == len(params)  # no duplicated trial
    assert len({t.number for t in all_trials}) == len(all_trials)


def test_two_workers_share_one_journal_study(tmp_path):
    config = write_config(tmp_path / "c.py", "pair", trials=6)
    done = subprocess.run([EFFSEARCH, "search", str(config), "--workdir", str(tmp_path / "w"),
                           "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    study = load(str(tmp_path / "w" / storage.JOURNAL_NAME), "pair")
    check_counts(study, 6)
    # Off a terminal the bar does not render: a line per finished trial says what happens.
    for t in study.get_trials(states=(TrialState.COMPLETE,)):
        assert re.search(rf"^trial {t.number}( \[.+\])? (done|stopped|reuses)", done.stderr,
                         re.MULTILINE), done.stderr
    logs = sorted((tmp_path / "w" / "logs").glob("pair.worker*.log"))
    assert len(logs) == 2 and all("worker done" in p.read_text() for p in logs)
    trained = sum(int(p.read_text().split("worker done: ")[1].split()[0]) for p in logs)
    assert trained == 6  # the workers' own counts add up to the study's


def test_two_workers_on_postgresql(tmp_path, postgres_url, capsys):
    name = f"pg-{os.getpid()}-{time.time_ns()}"
    config = write_config(tmp_path / "c.py", name, trials=4)
    # The CI server trusts loopback, so any password works: it must show up nowhere.
    secret = "pw-Secret-4711"
    url = postgres_url.replace("://effsearch@", f"://effsearch:{secret}@")
    assert secret in url
    done = subprocess.run([EFFSEARCH, "search", str(config), "--storage", url,
                           "--workers", "2", "--workdir", str(tmp_path / "w")],
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    check_counts(load(postgres_url, name), 4)
    assert main(["front", name, "--storage", url, "--json"]) == 0
    assert main(["export", name, "--storage", url, "-o", str(tmp_path / "c.json")]) == 0
    shown = done.stdout + done.stderr + "".join(capsys.readouterr())
    logs = "".join(p.read_text() for p in (tmp_path / "w" / "logs").glob("*.log"))
    assert "next: effsearch front" in done.stderr and "effsearch:***@" in done.stderr
    assert secret not in shown + logs + (tmp_path / "c.json").read_text()
    provenance = json.loads((tmp_path / "c.json").read_text())["provenance"]
    assert provenance["storage"] == postgres_url.replace("://effsearch@", "://")  # no user


def test_killed_search_resumes_and_retries_the_running_trial(tmp_path):
    config = write_config(tmp_path / "c.py", "kill", trials=4)
    workdir, url = tmp_path / "w", str(tmp_path / "w" / storage.JOURNAL_NAME)
    command = [EFFSEARCH, "search", str(config), "--workdir", str(workdir)]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    running = running_trial(url, "kill", after_a_complete_one=True)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole search, mid-trial
    proc.wait()
    assert running is not None, "no trial was seen running"
    victim = running.number
    finished_before = {t.number: t.values for t in load(url, "kill").get_trials()
                       if t.state == TrialState.COMPLETE}

    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    # The killed worker ran on this machine: its trial is failed at once, with no grace wait.
    assert "waiting for trial" not in done.stderr
    study = load(url, "kill")
    check_counts(study, 4)
    trials = study.get_trials()
    assert trials[victim].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == victim]
    assert retry.state == TrialState.COMPLETE and retry.params == trials[victim].params
    for number, values in finished_before.items():  # nothing finished was lost
        assert trials[number].values == values


def test_two_commands_of_two_workers_propose_different_networks(tmp_path):
    # Measured before workers had seeds of their own: 4 random-sampler workers on one study
    # proposed one sequence, and all but one quit after 50 duplicates in a row.
    config = write_config(tmp_path / "c.py", "four", trials=8)
    command = [EFFSEARCH, "search", str(config), "--workdir", str(tmp_path / "w"),
               "--workers", "2"]
    procs = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outs = [p.communicate(timeout=900) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    study = load(str(tmp_path / "w" / storage.JOURNAL_NAME), "four")
    check_counts(study, 8)
    # No proposal twice (rounding may still map two directions to one network: a reuse).
    proposals = [tuple(sorted(t.params.items())) for t in study.get_trials()]
    assert len(set(proposals)) == len(proposals)
    logs = "".join(p.read_text() for p in (tmp_path / "w" / "logs").glob("four.worker*.log"))
    assert sorted(re.findall(r"^worker slot (\d+)", logs, re.MULTILINE)) == ["0", "1", "2", "3"]
    for _, err in outs:  # each command shows its workers' slots
        assert re.search(r"^worker 0: worker slot \d+: sampler seed \d+$", err, re.MULTILINE)


def test_a_worker_killed_while_another_lives_is_not_waited_for(tmp_path):
    # A long grace: only the dead-worker check can end the killed trial in time.
    config = write_config(tmp_path / "c.py", "zombie", trials=4, grace_s="300")
    url = str(tmp_path / "w" / storage.JOURNAL_NAME)
    proc = subprocess.Popen([EFFSEARCH, "search", str(config), "--workdir",
                             str(tmp_path / "w"), "--workers", "2"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    victim = running_trial(url, "zombie")
    assert victim is not None, "no trial was seen running"
    killed_at = time.time()
    os.kill(victim.user_attrs["worker_pid"], signal.SIGKILL)
    _, err = proc.communicate(timeout=600)
    # The other worker finished the budget: the command says a worker died, and succeeds.
    assert proc.returncode == 0, err
    assert time.time() - killed_at < 200, "waited out the grace"
    assert re.search(r"^worker \d exited with code -9", err, re.MULTILINE), err
    trials = load(url, "zombie").get_trials()
    assert trials[victim.number].state == TrialState.FAIL
    (retry,) = [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
    assert retry.state == TrialState.COMPLETE


def test_every_worker_stops_when_every_training_fails(tmp_path):
    config = write_config(tmp_path / "c.py", "fails", trials=8)
    config.write_text(config.read_text().replace("resolution=8)",
                                                 "resolution=8, learning_rate=1e12)"))
    done = subprocess.run([EFFSEARCH, "search", str(config), "--workdir", str(tmp_path / "w"),
                           "--workers", "2"], capture_output=True, text=True, timeout=600)
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(
        "effsearch search: stopped: 5 trainings in a row failed"), done.stderr
    logs = sorted((tmp_path / "w" / "logs").glob("fails.worker*.log"))
    assert all("effsearch worker: stopped: 5 trainings in a row" in p.read_text() for p in logs)


def test_user_errors_are_one_line_with_exit_code_2(tmp_path, capsys):
    def error(argv, lines=1):
        assert main(argv) == 2
        err = capsys.readouterr()[1]
        assert err.count("\n") == lines and "Traceback" not in err
        return err

    typo = tmp_path / "typo.py"
    typo.write_text("from search.config import SearchConfig\n\n"
                    "def get_config():\n    return SearchConfig(nmae='x')\n")
    # The user's own frame follows the one line: the call in their config (its location, the
    # source line and Python 3.11's carets under the call).
    typo_error = error(["search", str(typo)], lines=4)
    assert "unexpected keyword argument 'nmae'" in typo_error.splitlines()[0]
    assert f'File "{typo}", line 4, in get_config' in typo_error
    flat = write_config(tmp_path / "flat.py", "flat", trials=1).read_text().replace(
        'CoefficientSearch(baseline=', 'CoefficientSearch(target=1.0, baseline=')
    (tmp_path / "flat.py").write_text(flat)
    assert "must be > 1" in error(["search", str(tmp_path / "flat.py")])
    tight = write_config(tmp_path / "tight.py", "tight", trials=1).read_text().replace(
        'search=CoefficientSearch(baseline="', 'search=BaselineSearch(macs_target=10, seed="'
    ).replace("match=None,", "")
    (tmp_path / "tight.py").write_text(tight.replace(
        "import CoefficientSearch,", "import BaselineSearch, CoefficientSearch,"))
    assert "infeasible MACs target" in error(["search", str(tmp_path / "tight.py"), "--workdir",
                                              str(tmp_path / "w")])
    assert "alpha must be >= 1" in error(["scale", "--coeffs", "0.9,1.1,1.1"])
    assert "does not answer" in error(["front", "x", "--storage",
                                       "postgresql://u:secret@127.0.0.1:1/none"])
    assert "secret" not in error(["front", "x", "--storage",
                                  "postgresql://u:secret@127.0.0.1:1/none"])
    assert "no study storage" in error(["front", "--workdir", str(tmp_path / "empty")])
    one = write_config(tmp_path / "one.py", "one", trials=1)
    assert "SQLite cannot serve parallel workers" in error(
        ["search", str(one), "--workers", "2", "--storage", f"sqlite:///{tmp_path / 'x.db'}"])
    journal = str(tmp_path / "j.journal")
    optuna.create_study(study_name="other", storage=storage.open_storage(journal))
    assert "no study 'nope'" in error(["front", "nope", "--storage", journal])
    assert "not created by effsearch" in error(["front", "other", "--storage", journal])
    foreign = tmp_path / "foreign.json"
    foreign.write_text("{}")
    assert "is not an effsearch coefficients file" in error(["scale", "--coeffs", str(foreign)])


def test_worker_environment_splits_gpus(monkeypatch):
    from search.study_commands import worker_env

    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_MEM_FRACTION", raising=False)
    envs = [worker_env(i, 4, gpus=2) for i in range(4)]
    assert [e["CUDA_VISIBLE_DEVICES"] for e in envs] == ["0", "1", "0", "1"]
    assert {e["XLA_PYTHON_CLIENT_MEM_FRACTION"] for e in envs} == {"0.45"}
    one_each = worker_env(1, 2, gpus=2)
    assert one_each["CUDA_VISIBLE_DEVICES"] == "1"
    assert "XLA_PYTHON_CLIENT_MEM_FRACTION" not in one_each
    cpu = worker_env(0, 2, gpus=0)
    assert "CUDA_VISIBLE_DEVICES" not in cpu and "XLA_PYTHON_CLIENT_MEM_FRACTION" not in cpu
    monkeypatch.setenv("XLA_PYTHON_CLIENT_MEM_FRACTION", "0.2")  # the user's setting wins
    assert worker_env(0, 3, gpus=1)["XLA_PYTHON_CLIENT_MEM_FRACTION"] == "0.2"


@pytest.mark.parametrize("database", ["sqlite", "postgresql"])
def test_workers_through_the_storage_proxy_survive_a_kill_and_a_proxy_restart(
        tmp_path, request, database):
    """Two workers on `--storage grpc://`: one is killed mid-trial and the proxy restarts
    once; the budget is met exactly, the killed trial retried, and a resumed command adds
    its trials through the proxy too."""
    pytest.importorskip("grpc", reason="the grpc extra is not installed")
    from test_storage_proxy import free_port, start_proxy

    if database == "sqlite":
        url = f"sqlite:///{tmp_path / 'db.sqlite'}"
    else:
        url = request.getfixturevalue("postgres_url")
    name, port = f"proxy-{os.getpid()}-{time.time_ns()}", free_port()
    config = write_config(tmp_path / "c.py", name, trials=5)
    server = start_proxy(url, port)
    command = [EFFSEARCH, "search", str(config), "--workdir", str(tmp_path / "w"),
               "--workers", "2"]
    env = os.environ | {"EFFSEARCH_STORAGE_URL": f"grpc://127.0.0.1:{port}"}
    try:
        # The storage from the environment; --workdir holds the logs.
        proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        victim = running_trial(url, name)
        assert victim is not None, "no trial was seen running"
        os.kill(victim.user_attrs["worker_pid"], signal.SIGKILL)
        server.kill()
        server.wait()
        time.sleep(2)
        server = start_proxy(url, port)
        _, err = proc.communicate(timeout=600)
        assert proc.returncode == 0, err
        study = load(url, name)
        check_counts(study, 5)
        trials = study.get_trials()
        assert trials[victim.number].state == TrialState.FAIL
        assert [t for t in trials if t.user_attrs.get("retry_of") == victim.number]
        # Resumed with a larger budget, the storage given as --storage this time.
        done = subprocess.run([*command, "--trials", "6", "--storage",
                               f"grpc://127.0.0.1:{port}"], capture_output=True, text=True,
                              timeout=600)
        assert done.returncode == 0, done.stderr
        check_counts(load(url, name), 6)
        # The study commands read through the proxy too.
        grpc_url = f"grpc://127.0.0.1:{port}"
        assert main(["front", name, "--storage", grpc_url, "--json"]) == 0
        assert main(["export", name, "--storage", grpc_url, "-o", str(tmp_path / "c.json")]) == 0
        assert json.loads((tmp_path / "c.json").read_text())["provenance"]["study"] == name
    finally:
        server.kill()
        server.wait()


@pytest.mark.parametrize("through", ["journal", "grpc"])
def test_two_hosts_share_the_ladder_and_train_each_row_once(tmp_path, through):
    """Two commands on one study, as two hosts would run them (on a journal, or through the
    storage proxy): both search, then both run the ladder; each row is trained by one of them
    and the stored ladder has every row."""
    from search import ladder

    config = write_config(tmp_path / "c.py", "hosts", trials=3, ladder="(2.0,)",
                          ladder_top="1", ladder_seeds="1")
    url, server = str(tmp_path / "w" / storage.JOURNAL_NAME), None
    env = dict(os.environ)
    if through == "grpc":
        pytest.importorskip("grpc", reason="the grpc extra is not installed")
        from test_storage_proxy import free_port, start_proxy

        url, port = f"sqlite:///{tmp_path / 'db.sqlite'}", free_port()
        server = start_proxy(url, port)
        env["EFFSEARCH_STORAGE_URL"] = f"grpc://127.0.0.1:{port}"
    command = [EFFSEARCH, "search", str(config), "--workdir", str(tmp_path / "w")]
    try:
        hosts = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True, env=env | {"EFFSEARCH_WORKER_SLOT": str(i)})
                 for i in range(2)]
        outputs = [h.communicate(timeout=900) for h in hosts]
    finally:
        if server is not None:
            server.kill()
            server.wait()
    assert [h.returncode for h in hosts] == [0, 0], outputs
    record = ladder.load(load(url, "hosts"))
    assert record is not None and record["rows"]
    trainings = sum(err.count("ladder training") for _, err in outputs)
    assert trainings == len(record["rows"])  # one seed per row, each row trained once
    assert len({(r["factor"], r["method"]) for r in record["rows"]}) == len(record["rows"])
