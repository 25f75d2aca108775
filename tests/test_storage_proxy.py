"""The gRPC storage proxy (search/storage/proxy.py): URLs, retries, and a real proxy restarted
under a running study."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from search import storage
from search.storage import proxy
from space import UserError

grpc = pytest.importorskip("grpc", reason="the grpc extra is not installed")
ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("url", "expected"), [
    ("grpc://localhost:13000", ("localhost", 13000)),
    ("grpc://10.0.0.5", ("10.0.0.5", 13000)),
    ("grpc://proxy.lab:80/", ("proxy.lab", 80)),
])
def test_proxy_urls(url, expected):
    assert proxy.address(url) == expected


@pytest.mark.parametrize("url", ["grpc://", "grpc://h:0", "grpc://h:99999", "grpc://h:x",
                                 "grpc://a/b:1"])
def test_bad_proxy_urls_are_one_line(url):
    with pytest.raises(UserError, match="grpc://HOST:PORT"):
        proxy.address(url)


def test_the_storage_url_comes_from_the_environment_unless_given(monkeypatch):
    monkeypatch.setenv(storage.STORAGE_ENV, "postgresql://u:p@db/x")
    assert storage.storage_url(None, None) == "postgresql://u:p@db/x"
    assert storage.storage_url("runs", None) == "postgresql://u:p@db/x"  # logs go to runs/
    assert storage.storage_url("runs", "grpc://h:1") == "grpc://h:1"
    monkeypatch.delenv(storage.STORAGE_ENV)
    assert storage.storage_url("runs", None) == str(Path("runs") / storage.JOURNAL_NAME)


def test_a_database_pool_is_small():
    kwargs = storage._engine_kwargs("postgresql://u@db/x")
    assert kwargs["pool_size"] + kwargs["max_overflow"] <= 2


# ----------------------------------------------------------------------------- retries


class _Unavailable(grpc.RpcError):
    def code(self):
        return grpc.StatusCode.UNAVAILABLE


class _Flaky:
    """An in-memory storage whose named calls fail with UNAVAILABLE: `before` times without
    running, then `after` times after running (the answer lost with the connection)."""

    def __init__(self, memory, before=0, after=0, calls=()):
        self.memory, self.before, self.after, self.calls = memory, before, after, set(calls)

    def __getattr__(self, name):
        method = getattr(self.memory, name)
        if name not in self.calls:
            return method

        def call(*args):
            if self.before:
                self.before -= 1
                raise _Unavailable()
            out = method(*args)
            if self.after:
                self.after -= 1
                raise _Unavailable()
            return out
        return call

    def close(self):
        pass


def _client(monkeypatch, flaky_kwargs, patience_s=10.0):
    memory = optuna.storages.InMemoryStorage()
    flaky = _Flaky(memory, **flaky_kwargs)
    monkeypatch.setattr(proxy.RetryingProxy, "_connect", lambda self: flaky)
    sleeps = []
    client = proxy.RetryingProxy("h", 1, patience_s=patience_s, sleep=sleeps.append)
    return client, memory, flaky, sleeps


def test_a_create_whose_answer_was_lost_makes_one_trial(monkeypatch):
    client, memory, flaky, sleeps = _client(monkeypatch, {})
    study_id = client.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")
    flaky.after, flaky.calls = 1, {"create_new_trial"}
    trial_id = client.create_new_trial(study_id)
    trials = memory.get_all_trials(study_id)
    assert [t._trial_id for t in trials] == [trial_id] and trials[0].state == TrialState.RUNNING
    assert client.retries == 1 and sleeps == [0.25]
    # An enqueued trial keeps its template (WAITING, fixed params) and gets one row too.
    template = optuna.trial.create_trial(state=TrialState.WAITING,
                                         system_attrs={"fixed_params": {"a": 1}})
    flaky.after = 1
    client.create_new_trial(study_id, template)
    waiting = memory.get_all_trials(study_id, states=(TrialState.WAITING,))
    assert len(waiting) == 1 and waiting[0].system_attrs["fixed_params"] == {"a": 1}


def test_a_tell_whose_answer_was_lost_is_taken_as_told(monkeypatch):
    client, memory, flaky, _ = _client(monkeypatch, {})
    study_id = client.create_new_study([optuna.study.StudyDirection.MAXIMIZE], "s")
    trial_id = client.create_new_trial(study_id)
    flaky.after, flaky.calls = 1, {"set_trial_state_values"}
    assert client.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.5])
    assert memory.get_trial(trial_id).values == [0.5]
    # Not a lost answer: a trial finished before is still refused.
    with pytest.raises(optuna.exceptions.UpdateFinishedTrialError):
        client.set_trial_state_values(trial_id, TrialState.COMPLETE, [0.7])


def test_calls_wait_for_a_restarting_proxy_then_stop_with_one_line(monkeypatch):
    client, _, _, sleeps = _client(monkeypatch, {"before": 3, "calls": {"get_all_studies"}})
    assert client.get_all_studies() == [] and sleeps == [0.25, 0.5, 1.0]
    client, *_ = _client(monkeypatch, {"before": 99, "calls": {"get_all_studies"}}, 3.0)
    with pytest.raises(storage.StorageError, match="has not answered for 4 s"):
        client.get_all_studies()


def test_a_proxy_that_does_not_answer_is_one_line(monkeypatch):
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setattr(storage, "PROXY_WAIT_S", 0.5)
    with pytest.raises(storage.StorageError, match=f"no storage proxy answers at "
                                                   f"grpc://127.0.0.1:{port}"):
        storage.open_storage(f"grpc://127.0.0.1:{port}")


# ----------------------------------------------------------------------------- a real proxy


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_proxy(url: str, port: int) -> subprocess.Popen:
    """`effsearch storage-proxy` in a process of its own, once it answers."""
    process = subprocess.Popen([sys.executable, "-m", "search.cli", "storage-proxy",
                                "--storage", url, "--host", "127.0.0.1", "--port", str(port)],
                               cwd=ROOT, stderr=subprocess.PIPE, text=True,
                               env=os.environ | {"PYTHONPATH": os.pathsep.join(
                                   [str(ROOT), *filter(None, [os.environ.get("PYTHONPATH")])])})
    client = proxy.RetryingProxy("127.0.0.1", port)
    try:
        client.wait_ready(30)
    except storage.StorageError:
        process.kill()
        raise AssertionError(process.communicate()[1]) from None
    return process


def test_a_study_goes_on_through_a_proxy_restart_and_no_tell_is_lost(tmp_path):
    url, port = f"sqlite:///{tmp_path / 'db.sqlite'}", free_port()
    server = start_proxy(url, port)
    try:
        study = optuna.create_study(study_name="r", direction="maximize",
                                    storage=storage.open_storage(f"grpc://127.0.0.1:{port}"))

        def objective(trial):
            time.sleep(0.02)
            return trial.suggest_float("a", 0, 1)

        optuna.logging.set_verbosity(optuna.logging.WARNING)
        worker = threading.Thread(target=study.optimize, args=(objective,),
                                  kwargs={"n_trials": 30})
        worker.start()
        time.sleep(0.3)
        server.kill()
        server.wait()
        time.sleep(1.0)  # calls fail UNAVAILABLE meanwhile, and wait
        server = start_proxy(url, port)
        worker.join(60)
        assert not worker.is_alive()
    finally:
        server.kill()
        server.wait()
    # What the database holds, read without the proxy: every trial told, none twice.
    trials = optuna.load_study(study_name="r", storage=url).get_trials()
    assert len(trials) == 30 and {t.state for t in trials} == {TrialState.COMPLETE}


def test_heartbeats_are_not_judged_until_a_grace_period_after_the_proxy_came_back(monkeypatch):
    from search import controller

    client, _, flaky, _ = _client(monkeypatch, {})
    study = optuna.create_study(study_name="s", storage=client)
    trial = study.ask()
    trial.set_user_attr(controller.HEARTBEAT, time.time() - 1000)  # silent for 1000 s
    flaky.before, flaky.calls = 1, {"get_all_studies"}
    client.get_all_studies()  # met the proxy down, then got through
    assert controller.fail_stale_trials(study, grace_s=120, max_retries=1) == []
    client.recovered_at -= 121
    assert controller.fail_stale_trials(study, grace_s=120, max_retries=1) == [trial.number]


def test_a_restarted_proxy_is_made_to_read_a_study_before_a_param_is_set(monkeypatch):
    """Optuna's server cache finds a trial made before its restart only after reading the
    study's trials; until then setting a param raises KeyError (NOT_FOUND)."""
    client, memory, flaky, _ = _client(monkeypatch, {})
    study = optuna.create_study(study_name="s", storage=client)
    trial = study.ask()
    forgetful = {"read": False, "refused": 0}

    def set_param(*args):
        if not forgetful["read"]:
            forgetful["refused"] += 1
            raise KeyError(args[0])
        return memory.set_trial_param(*args)

    def read(*args):
        forgetful["read"] = True
        return memory.get_all_trials(*args)

    monkeypatch.setattr(flaky, "set_trial_param", set_param, raising=False)
    monkeypatch.setattr(flaky, "get_all_trials", read, raising=False)
    value = client.set_trial_param(trial._trial_id, "a", 0.25,
                                   optuna.distributions.FloatDistribution(0, 1))
    assert value is None and forgetful["refused"] == 1
    assert memory.get_trial(trial._trial_id).params["a"] == 0.25
