"""Optuna's gRPC storage proxy for many workers: `effsearch storage-proxy` and `grpc://` URLs.

Every worker that opens PostgreSQL directly holds its own connections and reads every trial
on each sampler call; with hundreds of workers that exhausts the server's connections and
its reads (optuna PR #4449). Optuna's answer (>= 4.2) is `run_grpc_proxy_server`: one process
holds the database connections and a cache of the trials, and workers talk to it over gRPC
(`GrpcStorageProxy`). It serves an RDB storage only (PostgreSQL, MySQL, SQLite): Optuna does
not proxy a journal (optuna#6084), which one host's workers open directly anyway.

Two things Optuna's client leaves to its user, done here:
- A call made while the proxy restarts fails with UNAVAILABLE. `RetryingProxy` retries it
  with backoff on a fresh channel for up to `patience_s`, then stops with one line.
- A retried call whose first attempt did land must not land twice. Creating a trial carries
  a token (a system attr), so a retry first looks for the trial its lost answer made; a
  finished trial's state written twice is recognised as written. Claiming a waiting trial
  (WAITING -> RUNNING) whose answer was lost reads as claimed by another worker: that trial
  runs nowhere and has no heartbeat, so the dead-worker check fails and retries it after
  `grace_s` (nothing is lost, one grace period is).

The channel is insecure (Optuna's client offers no TLS): keep the proxy on a private network
or a loopback tunnel (README "Storage for many workers").
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import threading
import time
import uuid
import warnings
from collections.abc import Callable, Container, Iterator, Sequence
from typing import Any

import optuna
from optuna.distributions import BaseDistribution
from optuna.storages import BaseStorage
from optuna.study import StudyDirection
from optuna.study._frozen import FrozenStudy
from optuna.trial import FrozenTrial, TrialState

from search.storage.errors import StorageError
from space import UserError

log = logging.getLogger(__name__)

SCHEME = "grpc://"
DEFAULT_PORT = 13000  # Optuna's
PATIENCE_S = 600.0  # how long a worker waits for a restarting proxy before it stops
CREATE_TOKEN = "effsearch:create"  # system attr: which create made a trial (see above)


def address(url: str) -> tuple[str, int]:
    """(host, port) of `grpc://host[:port]`."""
    rest = url[len(SCHEME):].rstrip("/")
    host, _, port = rest.rpartition(":") if ":" in rest else (rest, "", str(DEFAULT_PORT))
    if not host or not port.isdigit() or not 0 < int(port) < 65536 or "/" in host:
        raise UserError(f"a storage proxy URL is grpc://HOST:PORT, got {url!r}")
    return host, int(port)


def _retried_codes() -> set[Any]:
    import grpc

    # UNAVAILABLE: no server (restarting, not yet up); the call did not run, or its answer
    # was lost with the connection. Anything else is the call's own error.
    return {grpc.StatusCode.UNAVAILABLE}


class RetryingProxy(BaseStorage):
    """`GrpcStorageProxy` whose calls survive a proxy restart (see the module docstring)."""

    def __init__(self, host: str, port: int, *, patience_s: float = PATIENCE_S,
                 sleep: Callable[[float], None] = time.sleep) -> None:
        self.host, self.port, self.patience_s, self._sleep = host, port, patience_s, sleep
        self._inner = self._connect()
        self._lock = threading.Lock()
        self._retried = _retried_codes()
        self.retries = 0  # calls that met an unavailable proxy (the load benchmark counts)
        # When a call last got through after the proxy was unavailable: until a grace period
        # later, heartbeats that could not land then do not make a trial look dead
        # (controller.fail_stale_trials).
        self.recovered_at: float | None = None
        self._studies: set[int] = set()  # the studies this client has used

    def _connect(self) -> Any:
        with _quiet_experimental():
            return optuna.storages.GrpcStorageProxy(host=self.host, port=self.port)

    def wait_ready(self, timeout_s: float) -> None:
        """Raises StorageError unless the proxy answers within `timeout_s`."""
        try:
            self._inner.wait_server_ready(timeout=timeout_s)
        except ConnectionError:
            raise StorageError(f"no storage proxy answers at grpc://{self.host}:{self.port} "
                               f"(waited {timeout_s:g} s): start one with `effsearch "
                               f"storage-proxy --storage URL --port {self.port}`") from None

    def _call(self, name: str, *args: Any, retried: list[int] | None = None,
              landed: Callable[[], Any] | None = None) -> Any:
        """`name(*args)` on the proxy, retried while it is unavailable. `retried` collects a
        mark per retry; `landed`, asked before each retry, returns what the call's lost
        answer was (the call is then not sent again) or None."""
        import grpc

        delay, waited = 0.25, 0.0
        while True:
            try:
                if waited and landed is not None:
                    found = landed()
                    if found is not None:
                        self.recovered_at = time.time()
                        return found
                inner = self._inner
                out = getattr(inner, name)(*args)
                if waited:
                    self.recovered_at = time.time()
                return out
            except grpc.RpcError as e:
                code = e.code()
                if code not in self._retried:
                    raise
                if waited >= self.patience_s:
                    raise StorageError(
                        f"the storage proxy at grpc://{self.host}:{self.port} has not "
                        f"answered for {waited:.0f} s ({code.name}): is `effsearch "
                        f"storage-proxy` running?") from None
                if waited == 0:
                    log.warning("storage proxy grpc://%s:%d unavailable; retrying for up to "
                                "%.0f s", self.host, self.port, self.patience_s)
                self.retries += 1
                if retried is not None:
                    retried.append(1)
                self._sleep(delay)
                waited += delay
                delay = min(2 * delay, 5.0)
                # A fresh channel: the old one's reconnect backoff grows to minutes. Once per
                # failed channel, however many threads (a trial's heartbeat) met it; the old
                # one is left open for calls still on it (closing it would cancel them).
                with self._lock:
                    if self._inner is inner:
                        self._inner = self._connect()

    # --- studies

    def create_new_study(self, directions: Sequence[StudyDirection],
                         study_name: str | None = None) -> int:
        retried: list[int] = []
        try:
            study_id = int(self._call("create_new_study", directions, study_name,
                                      retried=retried))
            self._studies.add(study_id)
            return study_id
        except optuna.exceptions.DuplicatedStudyError:
            if retried and study_name is not None:  # the lost answer's study
                return self.get_study_id_from_name(study_name)
            raise

    def delete_study(self, study_id: int) -> None:
        self._call("delete_study", study_id)

    def set_study_user_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call("set_study_user_attr", study_id, key, value)

    def set_study_system_attr(self, study_id: int, key: str, value: Any) -> None:
        self._call("set_study_system_attr", study_id, key, value)

    def get_study_id_from_name(self, study_name: str) -> int:
        study_id = int(self._call("get_study_id_from_name", study_name))
        self._studies.add(study_id)
        return study_id

    def get_study_name_from_id(self, study_id: int) -> str:
        return str(self._call("get_study_name_from_id", study_id))

    def get_study_directions(self, study_id: int) -> list[StudyDirection]:
        return list(self._call("get_study_directions", study_id))

    def get_study_user_attrs(self, study_id: int) -> dict[str, Any]:
        return dict(self._call("get_study_user_attrs", study_id))

    def get_study_system_attrs(self, study_id: int) -> dict[str, Any]:
        return dict(self._call("get_study_system_attrs", study_id))

    def get_all_studies(self) -> list[FrozenStudy]:
        return list(self._call("get_all_studies"))

    # --- trials

    def create_new_trial(self, study_id: int, template_trial: FrozenTrial | None = None) -> int:
        token = uuid.uuid4().hex
        self._studies.add(study_id)
        return int(self._call("create_new_trial", study_id, _with_token(template_trial, token),
                              landed=lambda: self._made_by(study_id, token)))

    def _made_by(self, study_id: int, token: str) -> int | None:
        """The trial a create with `token` made, if its answer was lost."""
        for t in self._inner.get_all_trials(study_id, False, None):
            if t.system_attrs.get(CREATE_TOKEN) == token:
                return int(t._trial_id)
        return None

    def set_trial_param(self, trial_id: int, param_name: str, param_value_internal: float,
                        distribution: BaseDistribution) -> None:
        args = (trial_id, param_name, param_value_internal, distribution)
        try:
            self._call("set_trial_param", *args)
        except KeyError:
            # A restarted proxy's cache knows a trial created before the restart only once it
            # has read that study's trials (Optuna's _CachedStorage.set_trial_param looks the
            # trial up there and nowhere else): make it read them, then set the param.
            for study_id in sorted(self._studies):
                self._call("get_all_trials", study_id, False, None)
            self._call("set_trial_param", *args)

    def get_trial_id_from_study_id_trial_number(self, study_id: int, trial_number: int) -> int:
        return int(self._call("get_trial_id_from_study_id_trial_number", study_id,
                              trial_number))

    def set_trial_state_values(self, trial_id: int, state: TrialState,
                               values: Sequence[float] | None = None) -> bool:
        retried: list[int] = []
        try:
            return bool(self._call("set_trial_state_values", trial_id, state, values,
                                   retried=retried))
        except RuntimeError:  # UpdateFinishedTrialError is one
            if retried:  # the first attempt landed and its answer was lost
                trial = self.get_trial(trial_id)
                if trial.state == state and (values is None
                                             or list(trial.values or ()) == list(values)):
                    return True
            raise

    def set_trial_intermediate_value(self, trial_id: int, step: int,
                                     intermediate_value: float) -> None:
        self._call("set_trial_intermediate_value", trial_id, step, intermediate_value)

    def set_trial_user_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call("set_trial_user_attr", trial_id, key, value)

    def set_trial_system_attr(self, trial_id: int, key: str, value: Any) -> None:
        self._call("set_trial_system_attr", trial_id, key, value)

    def get_trial(self, trial_id: int) -> FrozenTrial:
        trial: FrozenTrial = self._call("get_trial", trial_id)
        return trial

    def get_all_trials(self, study_id: int, deepcopy: bool = True,
                       states: Container[TrialState] | None = None) -> list[FrozenTrial]:
        self._studies.add(study_id)
        return list(self._call("get_all_trials", study_id, deepcopy, states))


def _with_token(template: FrozenTrial | None, token: str) -> FrozenTrial:
    """The trial to create, as a template carrying `token` (a new RUNNING trial if None)."""
    if template is None:
        return FrozenTrial(number=-1, state=TrialState.RUNNING, value=None,
                           datetime_start=datetime.datetime.now(), datetime_complete=None,
                           params={},
                           distributions={}, user_attrs={}, system_attrs={CREATE_TOKEN: token},
                           intermediate_values={}, trial_id=-1)
    return FrozenTrial(number=template.number, state=template.state, value=None,
                       values=template.values, datetime_start=template.datetime_start,
                       datetime_complete=template.datetime_complete, params=template.params,
                       distributions=template.distributions, user_attrs=template.user_attrs,
                       system_attrs={**template.system_attrs, CREATE_TOKEN: token},
                       intermediate_values=template.intermediate_values,
                       trial_id=template._trial_id)


@contextlib.contextmanager
def _quiet_experimental() -> Iterator[None]:
    """Optuna marks the proxy experimental and warns at every construction (a fresh channel
    after each failed call would repeat it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        yield


def serve(storage: BaseStorage, host: str, port: int, *, serial: bool = False) -> None:
    """Runs Optuna's proxy server for `storage` until interrupted.

    Args:
        serial: answer one call at a time. For SQLite: it has no row locks, so two claims of
            one waiting trial answered by two of the server's threads would both succeed
            (seen: a ladder row trained twice); one thread makes its calls a sequence.
    """
    from concurrent.futures import ThreadPoolExecutor

    with _quiet_experimental():
        optuna.storages.run_grpc_proxy_server(
            optuna.storages.get_storage(storage), host=host, port=port,
            thread_pool=ThreadPoolExecutor(max_workers=1) if serial else None)
