"""The scale ladder's rows as claimed units of work, so that workers on many hosts share them.

Every worker of a study runs the ladder after the search (`effsearch search` with
`SearchConfig.ladder`). Before, each one trained every row and rewrote the study's ladder
attribute whole, so N hosts trained the ladder N times and kept whichever write came last
(accelerator review, row 7). Now each row is one trial of a companion study beside the
search's (`<study>.ladder-<digest>`, the digest naming the ladder's rows and settings):

- The command that creates the companion study enqueues one WAITING trial per row (creation
  is atomic: the others find it made), then marks it `enqueued`.
- A worker claims a row by popping a WAITING trial (`study.ask()`): Optuna hands each one to
  exactly one caller, on a journal, PostgreSQL or the gRPC proxy alike. It trains the row's
  seeds with a heartbeat, as a search trial does, and stores the row in the trial.
- A claimed row whose worker died is failed and retried by the search's own rule
  (`controller.fail_stale_trials`, `retry`), so a killed host's row is trained by another.
- A worker leaves when no row is waiting or running; the rows are read back from the
  completed trials, never overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import optuna
from optuna.trial import TrialState

from search import controller
from search.terminal import Stopped

ENQUEUED = "effsearch.enqueued"  # companion study attr: every row is queued
ROW = "row"  # trial user attr: the trained row (JSON)
ENQUEUE_WAIT_S = 60.0  # how long a worker waits for another command's queue before its own


def companion_name(study: optuna.Study, keys: Sequence[str], settings: Any) -> str:
    digest = hashlib.sha256(json.dumps([list(keys), settings]).encode()).hexdigest()[:12]
    return f"{study.study_name}.ladder-{digest}"


def work(study: optuna.Study, keys: Sequence[str], train: Callable[[str], dict[str, Any]], *,
         settings: Any, heartbeat_s: float, grace_s: float, max_retries: int,
         poll_s: float = 2.0,
         wait: Callable[[float], None] = time.sleep,
         say: Callable[[str], None] | None = None) -> dict[str, dict[str, Any]]:
    """Trains the rows named `keys` that no other worker has claimed, and waits for theirs.

    Args:
        study: the search's study (the companion study lives in its storage).
        keys: one per row, unique; the same list on every worker.
        train: key -> the trained row.
        settings: what else the rows depend on (seeds, epochs: JSON), in the companion's name.
        heartbeat_s, grace_s, max_retries: the study's fault tolerance (SearchConfig's).

    Returns:
        Every row by key, whoever trained it.

    Raises:
        Stopped: a row failed on every retry (its reason is in the companion study).
    """
    if not keys:
        return {}
    # Optuna's Study has no public accessor for its storage; the companion must share it.
    storage = study._storage
    name = companion_name(study, keys, settings)
    try:
        queue = optuna.create_study(study_name=name, storage=storage, direction="maximize")
        created = True
    except optuna.exceptions.DuplicatedStudyError:
        queue = optuna.load_study(study_name=name, storage=storage)
        created = False
    _enqueue(queue, keys, created, wait, poll_s)
    while True:
        trials = queue.get_trials(deepcopy=False)
        if controller.fail_stale_trials(queue, grace_s, max_retries, trials):
            trials = queue.get_trials(deepcopy=False)
        waiting = any(t.state == TrialState.WAITING for t in trials)
        running = [t for t in trials if t.state == TrialState.RUNNING]
        if not waiting:
            if not running:
                break
            wait(poll_s)  # another worker's rows: done, or failed and queued again
            continue
        trial = queue.ask()
        key = trial.user_attrs.get(controller.WORK_KEY)
        if key is None:  # another worker popped the last waiting row first
            trial.set_user_attr("surplus", True)
            queue.tell(trial, state=TrialState.FAIL)
            continue
        trial.set_user_attr(controller.WORKER_MACHINE, controller._machine())
        trial.set_user_attr(controller.WORKER_PID, os.getpid())
        if say:
            say(f"ladder row {key}: claimed (companion study '{name}', trial {trial.number})")
        try:
            with controller.Heartbeat(trial, heartbeat_s):
                row = train(key)
        except BaseException as e:
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:500])
            queue.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if not isinstance(e, Exception):  # Ctrl-C: the row is queued for a resume
                controller.retry(queue, queue.trials[trial.number], max_retries + 1)
            raise
        trial.set_user_attr(ROW, json.dumps(row))
        # Failed meanwhile by another worker (a late heartbeat) and queued again: kept anyway.
        with contextlib.suppress(optuna.exceptions.UpdateFinishedTrialError):
            queue.tell(trial, 0.0)
    return _rows(queue, keys)


def _enqueue(queue: optuna.Study, keys: Sequence[str], created: bool,
             wait: Callable[[float], None], poll_s: float) -> None:
    """One WAITING trial per row, queued once: by the command that made the companion
    study, or, if it does not finish within ENQUEUE_WAIT_S (it died), by this one."""
    if not created:
        deadline = time.time() + ENQUEUE_WAIT_S
        while not queue.user_attrs.get(ENQUEUED) and time.time() < deadline:
            wait(poll_s)
        if queue.user_attrs.get(ENQUEUED):
            return
    queued = {t.user_attrs.get(controller.WORK_KEY) for t in queue.get_trials(deepcopy=False)}
    for key in keys:
        if key not in queued:
            queue.enqueue_trial({}, user_attrs={controller.WORK_KEY: key})
    queue.set_user_attr(ENQUEUED, True)


def _rows(queue: optuna.Study, keys: Sequence[str]) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for t in sorted(queue.get_trials(deepcopy=False), key=lambda t: t.number):
        if ROW in t.user_attrs:  # the first training of a row is its record
            rows.setdefault(t.user_attrs[controller.WORK_KEY], json.loads(t.user_attrs[ROW]))
    missing = [k for k in keys if k not in rows]
    if missing:
        raise Stopped(f"{len(missing)} ladder row(s) failed on every retry ({missing[0]}, ...; "
                      f"see the trials of study '{queue.study_name}'); run the command again "
                      f"to retry them")
    return {k: rows[k] for k in keys}

