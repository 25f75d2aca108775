"""Ladder rows as claimed units of work (search/ladder_claims.py): each row trained once by
whichever worker claims it, a dead worker's row trained by another, nothing overwritten."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import optuna
import pytest
from optuna.trial import TrialState

from search import controller, ladder_claims, storage
from search.terminal import Stopped

KEYS = [f"{f}x direction {d}" for f in (4, 8) for d in "abc"]
SETTINGS = {"seeds": [0, 1], "epochs": 3}
FAULTS = {"heartbeat_s": 0.2, "grace_s": 5.0, "max_retries": 1, "poll_s": 0.05}


def search_study(tmp_path) -> optuna.Study:
    store = storage.open_storage(str(tmp_path / storage.JOURNAL_NAME))
    return optuna.create_study(study_name="s", storage=store)


@pytest.fixture(params=["journal", "grpc"])
def url(request, tmp_path):
    """The storage the workers share: a journal file, or the gRPC proxy (over SQLite)."""
    if request.param == "journal":
        yield str(tmp_path / storage.JOURNAL_NAME)
        return
    pytest.importorskip("grpc", reason="the grpc extra is not installed")
    from test_storage_proxy import free_port, start_proxy

    port = free_port()
    server = start_proxy(f"sqlite:///{tmp_path / 'db.sqlite'}", port)
    yield f"grpc://127.0.0.1:{port}"
    server.kill()
    server.wait()


def test_two_workers_share_the_rows_and_each_is_trained_once(url):
    trained: list[tuple[str, str]] = []
    results = {}

    def worker(name: str) -> None:
        # Each worker opens the storage as a process of its own would.
        store = storage.open_storage(url)
        study = optuna.load_study(study_name="s", storage=store)

        def train(key: str) -> dict:
            trained.append((name, key))
            time.sleep(0.05)
            return {"method": key, "by": name}

        results[name] = ladder_claims.work(study, KEYS, train, settings=SETTINGS, **FAULTS)

    optuna.create_study(study_name="s", storage=storage.open_storage(url))
    threads = [threading.Thread(target=worker, args=(n,)) for n in ("a", "b")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert sorted(k for _, k in trained) == sorted(KEYS)  # each row once, by either
    assert {n for n, _ in trained} == {"a", "b"}  # and both took a share
    assert results["a"] == results["b"] and list(results["a"]) == KEYS
    # Again (a resumed command): every row is read back, none trained.
    again = ladder_claims.work(optuna.load_study(study_name="s",
                                                 storage=storage.open_storage(url)), KEYS,
                               lambda key: pytest.fail(f"{key} trained twice"),
                               settings=SETTINGS, **FAULTS)
    assert again == results["a"]


def test_a_row_whose_worker_died_is_trained_by_another(tmp_path):
    study = search_study(tmp_path)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # a finished process: its PID names no live worker
    # A first worker made the queue and claimed a row, then died.
    name = ladder_claims.companion_name(study, KEYS[:2], SETTINGS)
    queue = optuna.create_study(study_name=name, storage=study._storage, direction="maximize")
    for key in KEYS[:2]:
        queue.enqueue_trial({}, user_attrs={controller.WORK_KEY: key})
    queue.set_user_attr(ladder_claims.ENQUEUED, True)
    claimed = queue.ask()
    claimed.set_user_attr(controller.WORKER_MACHINE, controller._machine())
    claimed.set_user_attr(controller.WORKER_PID, gone.pid)
    rows = ladder_claims.work(study, KEYS[:2], lambda key: {"method": key},
                              settings=SETTINGS, **FAULTS)
    assert list(rows) == KEYS[:2]
    trials = queue.get_trials()
    assert trials[claimed.number].state == TrialState.FAIL
    assert any(t.user_attrs.get("retry_of") == claimed.number
               and t.state == TrialState.COMPLETE for t in trials)


def test_a_row_failing_on_every_retry_stops_with_one_line(tmp_path):
    study = search_study(tmp_path)

    def broken(key: str) -> dict:
        raise RuntimeError("out of memory")

    with pytest.raises(RuntimeError, match="out of memory"):
        ladder_claims.work(study, KEYS[:1], broken, settings=SETTINGS, **FAULTS)
    # The row is failed, not queued again: a rerun's queue has nothing to claim, and says so.
    with pytest.raises(Stopped, match="1 ladder row"):
        ladder_claims.work(study, KEYS[:1], broken, settings=SETTINGS, **FAULTS)


def test_another_ladder_on_the_same_study_has_its_own_queue(tmp_path):
    study = search_study(tmp_path)
    first = ladder_claims.work(study, KEYS[:1], lambda key: {"seeds": 2}, settings=SETTINGS,
                               **FAULTS)
    other = ladder_claims.work(study, KEYS[:1], lambda key: {"seeds": 3},
                               settings={"seeds": [0, 1, 2], "epochs": 3}, **FAULTS)
    assert first[KEYS[0]] == {"seeds": 2} and other[KEYS[0]] == {"seeds": 3}
