"""A search that cannot go on says why and exits non-zero: repeated failures, a budget left
short, a worker whose hardware would train another recipe; and the worker relay."""

import datetime
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState
from toys import TINY_ARCH

from search import controller, storage, study_commands
from search.cli import main
from search.config import SearchConfig
from space import UserError

MINUTE = datetime.timedelta(minutes=1)
START = datetime.datetime(2026, 1, 1)


def finished(number: int, state: TrialState, **attrs) -> optuna.trial.FrozenTrial:
    """A finished trial of `state`, completing `number` minutes after START."""
    return optuna.trial.FrozenTrial(
        number=number, state=state, value=0.5 if state == TrialState.COMPLETE else None,
        values=None, datetime_start=START, datetime_complete=START + number * MINUTE,
        params={}, distributions={}, user_attrs=attrs, system_attrs={},
        intermediate_values={}, trial_id=number)


def failed(number: int, reason: str = "training diverged: loss is nan in epoch 1"):
    return finished(number, TrialState.FAIL, **{controller.FAILURE: reason})


def test_five_trainings_failing_in_a_row_stop_the_search():
    trials = [finished(0, TrialState.COMPLETE), *(failed(n) for n in range(1, 5))]
    assert controller.repeated_failure(trials) is None  # four in a row
    reason = controller.repeated_failure([*trials, failed(5)])
    assert reason.startswith("5 trainings in a row failed (trials 1, 2, 3, 4, 5), all with "
                             "training diverged: loss is nan in epoch 1")
    # A success in between starts the count again; the order is the order they finished.
    late_success = finished(9, TrialState.COMPLETE)
    assert controller.repeated_failure([*trials, failed(5), late_success]) is None


def test_only_a_trainings_own_failure_counts():
    others = [
        finished(10, TrialState.FAIL, surplus=True),  # asked past the budget
        finished(11, TrialState.FAIL, error="KeyboardInterrupt: "),  # interrupted
        finished(12, TrialState.FAIL),  # its worker died: failed by another one
        finished(13, TrialState.PRUNED, rejected="cost 2.6x, 30% from 2x"),
        finished(14, TrialState.COMPLETE, duplicate_of=0),  # reused a result: no training
    ]
    four = [failed(n) for n in range(4)]
    # Passed over, neither failures nor successes.
    assert controller.repeated_failure([*four, *others]) is None
    reason = controller.repeated_failure([*four, *others, failed(20, "out of memory: x")])
    assert reason is not None and "the last with out of memory: x" in reason


def test_a_resumed_search_counts_failures_afresh_from_its_last_stop():
    trials = [failed(n) for n in range(7)]
    assert controller.repeated_failure(trials, since=4) is None
    assert controller.repeated_failure(trials, since=1) is not None


def write_config(path, **proxy):
    options = "".join(f", {k}={v!r}" for k, v in proxy.items())
    path.write_text(textwrap.dedent(f"""
        from search.config import CoefficientSearch, SearchConfig
        from trainers.proxy import ProxyConfig

        def get_config():
            return SearchConfig(
                name="stops", search=CoefficientSearch(baseline="{TINY_ARCH}", match=None,
                                                      channel_divisor=2),
                proxy=ProxyConfig(dataset="digits", epochs=1, batch_size=128,
                                  resolution=8{options}),
                sampler="random", trials=8, startup_trials=2, halving=None)
        """))
    return path


def test_a_search_whose_every_training_diverges_stops_with_one_line(tmp_path, capsys):
    # A learning rate of 1e12 makes the first epoch's loss NaN, for every network.
    config = write_config(tmp_path / "c.py", learning_rate=1e12)
    workdir = str(tmp_path / "w")
    assert main(["search", str(config), "--workdir", workdir]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert last.startswith("effsearch search: stopped: 5 trainings in a row failed"), err
    assert "training diverged: loss is nan" in last
    study = optuna.load_study(study_name="stops", storage=storage.open_storage(
        str(tmp_path / "w" / storage.JOURNAL_NAME)))
    trained = study.get_trials(states=(TrialState.FAIL,))
    assert len(trained) == 5 and all(controller.FAILURE in t.user_attrs for t in trained)
    # The rest of the enqueued design waits for the resumed search.
    assert {t.state for t in study.get_trials()} <= {TrialState.FAIL, TrialState.WAITING}
    assert study.user_attrs[controller.FAILURE_STOP]["trial"] == 4


def test_a_budget_left_short_says_why_and_exits_1(tmp_path, capsys, monkeypatch):
    config = write_config(tmp_path / "c.py")

    def stops_early(config, study, *, trials, **_):  # the duplicates stop, without training
        return controller.WorkerReport(stopped="the last 50 proposals were networks "
                                               "already trained")

    monkeypatch.setattr(controller, "run_worker", stops_early)
    assert main(["search", str(config), "--workdir", str(tmp_path / "w")]) == 1
    last = capsys.readouterr().err.strip().splitlines()[-1]
    assert last == ("effsearch search: stopped: the study holds 0 of the 8 trainings asked "
                    "for: stopping: the last 50 proposals were networks already trained; run "
                    "the command again to go on")


def runtime(**changes):
    return {"backend": "gpu", "device_kind": "NVIDIA H200", "device_count": 1,
            "compute_dtype": "bfloat16", "depthwise": "xla", "batch_size": 128} | changes


def test_a_worker_that_would_train_another_recipe_is_refused():
    study = optuna.create_study(study_name="mixed")
    config = SearchConfig(name="mixed")
    controller.check_runtime(study, config, runtime())  # the first worker records its own
    assert study.user_attrs[controller.RUNTIME] == runtime()
    controller.check_runtime(study, config, runtime(device_kind="NVIDIA H100"))  # same recipe
    with pytest.raises(UserError) as refused:
        controller.check_runtime(study, config, runtime(
            backend="cpu", device_kind="cpu", compute_dtype="float32", depthwise="shift"))
    message = str(refused.value)
    assert "\n" not in message
    for change in ("backend gpu -> cpu", "compute_dtype bfloat16 -> float32",
                   "depthwise xla -> shift"):
        assert change in message
    with pytest.raises(UserError, match="batch_size 128 -> 96"):
        controller.check_runtime(study, config, runtime(device_count=3, batch_size=96))


def test_the_command_relays_what_workers_wait_for_and_why_they_stop(tmp_path, monkeypatch):
    lines = ["worker slot 1: sampler seed 7", "trial 3 done: val_top1 0.5",
             "waiting for trial 3 (worker h:1, last heartbeat 2 s ago): ...",
             "stopping: the last 50 proposals were networks already trained"]
    script = "; ".join(f"print({line!r}, flush=True)" for line in lines)

    commands = []

    class FakeWorker:  # prints what a worker would, then exits 0
        def __new__(cls, command, **kwargs):
            commands.append(command)
            return real_popen([sys.executable, "-c", script], **kwargs)

    real_popen = study_commands.subprocess.Popen
    monkeypatch.setattr(study_commands.subprocess, "Popen", FakeWorker)
    args = type("Args", (), {"workers": 2, "config": "c.py", "allow_cpu": True})()
    study = type("Study", (), {"study_name": "relay", "user_attrs": {}})()
    said = []
    stops = study_commands._run_workers(args, "x.journal", study, 8, tmp_path, said.append)
    for i in (0, 1):
        assert f"worker {i}: worker slot 1: sampler seed 7" in said
        assert f"worker {i}: {lines[2]}" in said
        assert f"worker {i}: trial 3 done: val_top1 0.5" not in said  # the bar says that
    assert stops == [f"worker {i} {lines[3]}" for i in (0, 1)]
    assert all(c[-1] == "--allow-cpu" for c in commands)  # the workers train where told
