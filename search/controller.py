"""The search controller: one Optuna study, driven by ask/tell from any number of workers.

A worker loops: fail trials whose worker died (their heartbeat went silent) and enqueue
retries, ask for a trial, turn its parameters into an architecture (a scaled baseline, or a
member of the baseline space), reject it without training if it is infeasible, train the
proxy with rung decisions after each epoch, and tell the values. Everything a trial measured
goes into its user attrs, so optuna-dashboard shows it and `front`/`export` read it back.

Why ask/tell and not `study.optimize`: the controller must reject candidates without training,
stop trials at rungs of a multi-objective study (Optuna prunes only single-objective ones),
and keep an exact trial budget across workers and hosts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import logging
import os
import socket
import sys
import threading
import time
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

import space
from search import factor_rungs, noise_pick, registry
from search import halving as halving_lib
from search.config import SearchConfig, dumps
from search.halving import BRACKET, PROMOTED_FROM, PROMOTED_RUNG, Halving
from search.kinds import Candidate
from search.kinds.base import FACTOR, LATTICE
from search.records import CONFIG_ATTR, study_config
from search.terminal import Stopped
from space import UserError
from trainers.checkpoints import Checkpointing, path_of
from trainers.config import ProxyConfig
from trainers.data import Dataset
from trainers.proxy import (
    ProxyResult,
    Stop,
    describe_proxy_dataset,
    input_pipeline,
    load_proxy_dataset,
    runtime_signature,
    train_and_evaluate,
    training_split,
)
from trainers.streaming import LazyImages

HEARTBEAT = "heartbeat"
WORKER_MACHINE, WORKER_PID = "worker_machine", "worker_pid"
WORK_KEY = "work_key"  # a claimed unit of work other than a search trial (ladder_claims.py)
MAX_REJECTIONS_IN_A_ROW = 500
MAX_DUPLICATES_IN_A_ROW = 50  # proposals of networks already trained before a worker gives up
# Trainings in a row, across the study, that failed for a reason of their own (the loss
# diverged, the data or the network did not fit the device) before every worker stops: a
# failure common to every trial would otherwise write failed trials forever.
MAX_FAILURES_IN_A_ROW = 5
FAILURE = "failure"  # the user attr holding a training's own reason for failing
FAILURE_STOP = "failure_stop"  # study attr: the last trial of a stop for repeated failures
# What a trial records of its `ProxyResult`: every field but those recorded from the candidate
# before training (arch, resolution, costs), the budget (recorded as "budget"), and what the
# study already holds (its config and dataset). The batch is recorded: it is the config's
# rounded down to a multiple of the worker's device count.
_NOT_RECORDED = frozenset({"arch", "resolution", "macs", "params", "activations",
                           "epochs_completed", "steps", "config", "dataset"})
RUNTIME = "runtime"  # study attr: the first worker's `runtime_signature`, which others match
RESULT_ATTRS = tuple(f.name for f in dataclasses.fields(ProxyResult)
                     if f.name not in _NOT_RECORDED)

log = logging.getLogger("effsearch")

# What trains a trial: (its proxy config, the trial, the per-epoch callback) -> result. The
# default is real training; `search.replay` looks results up in a recorded table instead.
Trainer = Callable[[ProxyConfig, optuna.Trial, Callable[[int, dict[str, float]], None]],
                   ProxyResult]


# ----------------------------------------------------------------------------- study


def open_study(config: SearchConfig, storage: optuna.storages.BaseStorage,
               name: str, *, sampler_seed: int | None = None) -> tuple[optuna.Study, bool]:
    """Creates the study (returning True) or loads it, checking it is the same search.

    Creation is the lock: of several commands started at once against one storage, exactly
    one creates the study and enqueues the design; the others load it.

    Args:
        sampler_seed: this worker's sampler seed (`worker_seed`); None: the study's seed.
            The design enqueued at creation always comes from the study's seed.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # our progress bar says it better
    sampling = config if sampler_seed is None else dataclasses.replace(config, seed=sampler_seed)
    sampler = registry.SAMPLERS[config.sampler].make(sampling)
    if factor_rungs.factors_of(config):  # it learns from the lowest factor only
        sampler = factor_rungs.LowestFactorSampler(sampler, factor_rungs.factors_of(config))
    pruner = (registry.PRUNERS[config.pruner][1](config) if config.pruner
              else optuna.pruners.NopPruner())
    directions = list(config.objective.directions)
    try:
        study = optuna.create_study(study_name=name, storage=storage, sampler=sampler,
                                    pruner=pruner, directions=directions)
    except optuna.exceptions.DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=sampler,
                                  pruner=pruner)
        changed = config_changes(_normalized(study_config(study)), json.loads(dumps(config)))
        if changed:
            raise UserError(f"study '{name}' exists with another config ({'; '.join(changed)}); "
                            f"resume it with the config it was made with, or start a new study "
                            f"with --study NEW_NAME") from None
        return study, False
    study.set_user_attr(CONFIG_ATTR, dumps(config))
    with warnings.catch_warnings():  # experimental since Optuna 3.2, but the dashboard uses it
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        study.set_metric_names(list(config.objective.names))
    return study, True


def _normalized(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored config with the fields a later effsearch added at the values the study was
    made with (`SearchKind.from_json`), so resuming an old study under new defaults is refused
    rather than silently changing its search."""
    from search import kinds

    search = json.loads(json.dumps(dataclasses.asdict(kinds.from_stored(stored))))
    return {**stored, "search": search}


# What a resumed study may change: the budget (`--trials`), the fault-tolerance timings and
# the ladder run after it (none changes what a trial means).
RESUMABLE = frozenset({"name", "trials", "heartbeat_s", "grace_s", "max_retries", "ladder",
                       "ladder_top", "ladder_seeds", "noise_seeds", "noise_std"})


def config_changes(stored: dict[str, Any], mine: dict[str, Any], prefix: str = "") -> list[str]:
    """The fields where a config differs from a study's stored one, as "path: old -> new".

    Fields in only one of the two (added or dropped by another effsearch version) are not
    compared: an older study keeps working after an upgrade.
    """
    changes = []
    for key in stored.keys() & mine.keys():
        path = f"{prefix}{key}"
        if not prefix and key in RESUMABLE:
            continue
        theirs, ours = stored[key], mine[key]
        if isinstance(theirs, dict) and isinstance(ours, dict):
            changes += config_changes(theirs, ours, f"{path}.")
        elif theirs != ours:
            changes.append(f"{path}: {theirs!r} -> {ours!r}")
    return sorted(changes)


def design(config: SearchConfig) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """The (params, user_attrs) enqueued up front: references first, then a seeded design."""
    return config.search.design(sampler=config.sampler, startup_trials=config.startup_trials,
                                seed=config.seed)


def worker_seed(seed: int, slot: int) -> int:
    """The sampler seed of the worker in `slot` (`search.slots`): the study's own seed for
    slot 0, so a one-worker search samples as it always did, and a seed derived from both
    for the others. Workers built with one seed propose one sequence: measured with 4
    workers on PostgreSQL, their first 50 proposals were identical."""
    if slot == 0:
        return seed
    return int(np.random.SeedSequence([seed % 2**63, slot]).generate_state(1)[0])


def budget(config: SearchConfig) -> int:
    """Trained trials the study is to finish."""
    if config.trials is not None:
        return config.trials
    return len(design(config))


def enqueue_design(study: optuna.Study, config: SearchConfig) -> int:
    """Enqueues the design (at most the budget); returns how many trials were enqueued."""
    points = design(config)
    points = points[: config.trials or len(points)]  # the grid's budget is its size
    for params, attrs in points:
        study.enqueue_trial(_plain(params), user_attrs=attrs)
    return len(points)


def _plain(params: dict[str, Any]) -> dict[str, Any]:
    # numpy scalars from the design would not survive JSON storage.
    return {k: v.item() if hasattr(v, "item") else v for k, v in params.items()}


# ----------------------------------------------------------------------------- trials


def counts_toward_budget(trial: FrozenTrial, grid: bool = False) -> bool:
    """Trained (or training, or queued) trials count; failed, rejected and duplicate ones (a
    network already trained: nothing is learnt) do not, except on a grid, whose budget is its
    points: a rejected or duplicate point is done too. A promotion (halving resuming a stopped
    trial) continues a counted trial: it does not count again."""
    if trial.state == TrialState.FAIL or PROMOTED_FROM in trial.user_attrs:
        return False
    if grid:
        return True
    if "duplicate_of" in trial.user_attrs:
        return False
    return not (trial.state == TrialState.PRUNED and "rejected" in trial.user_attrs)


def fail_stale_trials(study: optuna.Study, grace_s: float, max_retries: int,
                      trials: Sequence[FrozenTrial] | None = None) -> list[int]:
    """Fails RUNNING trials whose worker is gone and enqueues retries.

    A worker is gone when its heartbeat is older than `grace_s`, or at once when it ran on this
    machine (same host, boot and PID namespace) and its process no longer exists: a search
    resumed after a crash or kill then retries the interrupted trial without waiting.
    Safe when several workers do it at once: only the one whose tell succeeds retries.
    Heartbeats are the workers' wall clocks; hosts must agree on time to within the grace.

    Returns:
        The numbers of the trials this call failed.
    """
    now = time.time()
    # Through a storage proxy that was just down, every worker's heartbeats stopped landing
    # too: they are judged again only once a grace period has passed since it came back.
    recovered = getattr(study._storage, "recovered_at", None)
    blind = recovered is not None and now - recovered < grace_s
    failed = []
    for t in trials if trials is not None else study.get_trials(deepcopy=False):
        if t.state != TrialState.RUNNING:
            continue
        stale = now - last_heartbeat(t, now) > grace_s and not blind
        if not stale and not worker_is_dead(t):
            continue
        try:
            study.tell(t.number, state=TrialState.FAIL)
        except (ValueError, RuntimeError):  # another worker got there first
            continue
        failed.append(t.number)
        retry(study, t, max_retries)
    return failed


def current_trials(study: optuna.Study, config: SearchConfig) -> list[FrozenTrial]:
    """The study's trials, once those whose worker is gone are failed (and retried)."""
    trials = study.get_trials(deepcopy=False)
    if fail_stale_trials(study, config.grace_s, config.max_retries, trials):
        trials = study.get_trials(deepcopy=False)
    return trials


def last_heartbeat(trial: FrozenTrial, now: float) -> float:
    """When the trial last said it was alive (its start if it never did)."""
    start = trial.datetime_start.timestamp() if trial.datetime_start else now
    return float(trial.user_attrs.get(HEARTBEAT, start))


def _machine() -> str:
    """This process's host, boot and PID namespace: where a PID means the same process."""
    parts = [socket.gethostname()]
    with contextlib.suppress(OSError):  # Linux only; elsewhere only the heartbeat counts
        parts.append(Path("/proc/sys/kernel/random/boot_id").read_text().strip())
        parts.append(str(os.stat("/proc/self/ns/pid").st_ino))
        return "/".join(parts)
    return ""


def worker_is_dead(trial: FrozenTrial) -> bool:
    """Whether the trial's worker ran on this machine and its process has exited.

    False when unsure (another machine, no record, a PID reused by a live process): then the
    heartbeat grace decides.
    """
    machine, pid = trial.user_attrs.get(WORKER_MACHINE), trial.user_attrs.get(WORKER_PID)
    if not machine or machine != _machine() or not isinstance(pid, int) or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return True
    except PermissionError:  # exists, owned by someone else
        return False
    return _is_zombie(pid)


def _is_zombie(pid: int) -> bool:
    """Whether `pid` has exited but is not yet reaped by its parent: signal 0 still finds a
    zombie, and a worker killed with kill -9 stays one until its parent waits for it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:  # gone meanwhile, or no /proc (then only the heartbeat decides)
        return False
    return stat.rpartition(")")[2].split()[:1] == ["Z"]  # the state follows "(comm)"


def retry(study: optuna.Study, trial: FrozenTrial, max_retries: int) -> bool:
    """Enqueues the same parameters again, unless the trial was retried `max_retries` times."""
    retries = int(trial.user_attrs.get("retries", 0))
    if retries >= max_retries:
        return False
    attrs = {k: v for k, v in trial.user_attrs.items()
             if k in ("reference", "coefficients", LATTICE, PROMOTED_FROM, PROMOTED_RUNG,
                      BRACKET, FACTOR, WORK_KEY)}
    attrs.update(retry_of=trial.number, retries=retries + 1)
    study.enqueue_trial(trial.params, user_attrs=attrs)
    return True


class Heartbeat:
    """Writes the trial's `heartbeat` user attr every `interval` seconds from a thread."""

    def __init__(self, trial: optuna.Trial, interval: float) -> None:
        self._trial, self._interval = trial, interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self._trial.set_user_attr(HEARTBEAT, time.time())
            except Exception:  # the trial was failed by another worker: stop quietly
                return

    def __enter__(self) -> Heartbeat:
        self._trial.set_user_attr(HEARTBEAT, time.time())
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


class TrialRunner:
    """Turns trials into candidates and trains them; one per worker process.

    Holds what is shared by all trials of a worker: the dataset (loaded once, at the first
    training: a parent that starts workers and trains nothing reads only what describes it),
    the baseline spec adapted to it, and the cost target of the reward.
    """

    def __init__(self, config: SearchConfig, study: optuna.Study,
                 dataset: Dataset | None = None, train: Trainer | None = None,
                 wait: Callable[[float], None] = time.sleep, poll_s: float = 2.0,
                 checkpoints: str | None = None) -> None:
        self.config, self.study = config, study
        self.train = train  # None: real training (`train_and_evaluate`)
        # Where trials stopped by halving leave a checkpoint for their promotion (any path
        # Orbax opens, shared by every worker); None: promotions retrain from epoch 1.
        self.checkpoints = checkpoints
        self.wait, self.poll_s = wait, poll_s  # while another worker trains the same network
        self._dataset = dataset
        info = dataset.info if dataset is not None else describe_proxy_dataset(config.proxy)
        self.baseline = dataclasses.replace(config.proxy, arch=config.search.start).spec(
            info.num_classes, info.channels)
        config.search.prepare(self.baseline)  # e.g. an infeasible MACs target, before training
        # Halving's noise band (noise_promotions), read once: before training, as a missing
        # seed std is the user's to supply.
        self.band = noise_pick.promotion_band(study, config)
        self._latency_cache: dict[str, float] = {}

    @property
    def dataset(self) -> Dataset:
        if self._dataset is None:
            self._dataset = load_proxy_dataset(self.config.proxy)
        return self._dataset

    def propose(self, trial: optuna.Trial) -> Candidate | str:
        """The trial's network, or why it is rejected without training."""
        return self.config.search.propose(trial, self.baseline)

    # --- objective values

    def latency_ms(self, spec: space.ArchSpec) -> float:
        key = space.encode(spec)
        if key not in self._latency_cache:
            from trainers.probes import measure_latency

            lat = measure_latency(spec, batch=self.config.objective.latency_batch, train=False,
                                  depthwise=self.config.proxy.depthwise)
            self._latency_cache[key] = lat.forward_p50_ms
        return self._latency_cache[key]

    def cost_target(self) -> float:
        """T of the reward, in the cost's unit."""
        objective = self.config.objective
        if objective.target is not None:
            return objective.target
        if objective.cost == "latency":
            baseline_cost = self.latency_ms(self.baseline)
        else:
            baseline_cost = float(getattr(space.cost(self.baseline), objective.cost))
        return self.config.search.cost_target(objective.cost, baseline_cost)

    def values(self, metric: float, cost: float) -> list[float]:
        objective = self.config.objective
        if objective.kind == "pareto":
            return [metric, cost]
        if objective.kind == "reward":
            return [metric * (cost / self.cost_target()) ** objective.weight]
        return [metric]

    # --- one trial

    def run(self, trial: optuna.Trial, candidate: Candidate) -> tuple[TrialState, list | None]:
        """Trains a candidate; returns the state and values to tell."""
        config, objective = self.config, self.config.objective
        spec = candidate.spec
        total = space.cost(spec)
        attrs: dict[str, Any] = {
            "kind": config.kind, "arch": space.encode(spec), "resolution": spec.resolution,
            "macs": total.macs, "params": total.params, "activations": total.activations,
            "max_budget": config.proxy.epochs, "baseline_arch": space.encode(self.baseline),
            **candidate.attrs}
        costs = {"macs": float(total.macs), "params": float(total.params),
                 "activations": float(total.activations)}
        if objective.cost == "latency":
            costs["latency"] = attrs["latency_ms"] = self.latency_ms(spec)
        cost = costs[objective.cost]
        for key, value in attrs.items():
            trial.set_user_attr(key, value)

        promoted_rung = int(trial.user_attrs.get(PROMOTED_RUNG, 0))
        climb = factor_rungs.is_climb(trial.user_attrs, factor_rungs.factors_of(config))
        twin = None
        # A halving promotion retrains its own network; a climb to a larger factor is a new
        # network, which another direction's climb may have trained already.
        if PROMOTED_FROM not in trial.user_attrs or climb:
            self._await_running_twin(trial, attrs["arch"])
            twin = self._twin(trial.number, attrs["arch"])
        if twin is not None:
            # Not its rung values: one network must not count twice in a rung's population.
            for key in (*RESULT_ATTRS, "budget", "dataset", "stopped_at"):
                if key in twin.user_attrs:
                    trial.set_user_attr(key, twin.user_attrs[key])
            trial.set_user_attr("duplicate_of", twin.number)
            if twin.state == TrialState.PRUNED:  # stopped at a rung, and would be again
                return TrialState.PRUNED, None
            return TrialState.COMPLETE, list(twin.values)

        rungs: list[int] = []
        if config.halving and not climb:  # halving works inside the lowest factor
            bracket = int(trial.user_attrs.get(BRACKET, config.halving.bracket(trial.number)))
            trial.set_user_attr(BRACKET, bracket)
            # A promotion was judged at the rungs up to its promotion already.
            rungs = [r for r in config.halving.rungs(config.proxy.epochs, bracket)
                     if r > promoted_rung]

        stopped: list[int] = []

        def on_epoch(epoch: int, metrics: dict[str, float]) -> None:
            values = self.values(metrics[objective.metric], cost)
            if config.pruner:
                trial.report(values[0], epoch)
                # Hyperband has a rung at the full budget too: a finished trial is not pruned.
                if epoch < config.proxy.epochs and trial.should_prune():
                    # Keep what it reached, so `front --all` and the progress bar see it.
                    for name in (objective.metric, "val_top1"):
                        trial.set_user_attr(name, metrics[name])
                    trial.set_user_attr("budget", epoch)
                    raise optuna.TrialPruned(f"pruned at epoch {epoch}")
            if epoch in rungs and config.halving:  # rungs come from halving
                key = f"rung_{epoch}"
                trial.set_user_attr(key, values)
                others = self._rung_values(config.halving,
                                           self.study.get_trials(deepcopy=False), key,
                                           bracket, exclude=(trial.number,))
                if not halving_lib.promote(values, others, objective.directions,
                                           config.halving.eta, band=self.band):
                    trial.set_user_attr("stopped_at", epoch)
                    stopped.append(epoch)
                    raise Stop

        proxy = config.proxy.for_spec(spec)
        checkpointing = self._checkpointing(trial, rungs, promoted_rung)
        result: ProxyResult | None = None
        try:
            with Heartbeat(trial, config.heartbeat_s):
                result = (train_and_evaluate(proxy, dataset=self.dataset, callback=on_epoch,
                                             checkpointing=checkpointing)
                          if self.train is None else self.train(proxy, trial, on_epoch))
        except optuna.TrialPruned:
            return TrialState.PRUNED, None
        finally:
            if result is not None:
                self._record(trial, result)
            if self.train is None:
                _release_memory()
        if result.resume_error:
            log.warning("trial %d: its checkpoint could not be read (%s); trained from epoch 1",
                        trial.number, result.resume_error)
        if result.status != "ok":
            trial.set_user_attr(FAILURE, result.reason or "failed")
            return TrialState.FAIL, None
        if stopped:
            # PRUNED, its rung values in user attrs: Optuna's own views (best_trials, the
            # dashboard's Pareto front) then see only full-budget results as complete.
            return TrialState.PRUNED, None
        return TrialState.COMPLETE, self.values(getattr(result, objective.metric), cost)

    def _checkpointing(self, trial: optuna.Trial, rungs: Sequence[int],
                       promoted_rung: int) -> Checkpointing | None:
        """Save where halving may stop the trial; a promotion continues from its original's
        checkpoint at the rung it passed."""
        if self.checkpoints is None or (not rungs and not promoted_rung):
            return None
        resume = None
        if promoted_rung:
            resume = path_of(checkpoint_folder(self.checkpoints, self.study.study_name,
                                               int(trial.user_attrs[PROMOTED_FROM])),
                             promoted_rung)
        return Checkpointing(
            save_to=checkpoint_folder(self.checkpoints, self.study.study_name, trial.number),
            save_at=tuple(rungs), resume_from=resume)

    def _twin(self, number: int, arch: str) -> FrozenTrial | None:
        """A finished trial of the same network whose result stands for this one.

        Rounding maps nearby directions to one network, and training it again with the same
        seed would repeat the curve. A twin halving stopped at a rung stands in as stopped:
        whether that network goes on is its promotion's decision (`promotions`), once.
        """
        for t in self.study.get_trials(deepcopy=False):
            finished = t.state == TrialState.COMPLETE or (
                t.state == TrialState.PRUNED and "stopped_at" in t.user_attrs)
            if t.number != number and finished and t.user_attrs.get("arch") == arch:
                return t
        return None

    def _await_running_twin(self, trial: optuna.Trial, arch: str) -> None:
        """Waits while an earlier trial of the same network is training on another worker.

        Its result will stand for this trial (`_twin`), and waiting never ends later than
        training the network again would, since the other started first; only if it fails
        does this trial train. Replaying the MNIST direction table with 4 workers, the 0.05
        grid trained 34 networks where one worker trains 22. Only earlier trials are waited
        for, so two workers never wait for each other; a silent worker's trial is failed as
        in `run_worker`, which ends the wait.
        """
        def running() -> bool:
            return any(t.number < trial.number and t.state == TrialState.RUNNING
                       and t.user_attrs.get("arch") == arch and PROMOTED_RUNG not in t.user_attrs
                       for t in current_trials(self.study, self.config))

        if running():
            with Heartbeat(trial, self.config.heartbeat_s):
                while running():
                    self.wait(self.poll_s)

    def _rung_values(self, halving: Halving, trials: Sequence[FrozenTrial], key: str,
                     bracket: int, exclude: Sequence[int]) -> list[list[float]]:
        """What the other trials of a bracket recorded at rung `key`."""
        return [t.user_attrs[key] for t in trials
                if t.number not in exclude and key in t.user_attrs
                and _bracket(halving, t) == bracket]

    @staticmethod
    def _record(trial: optuna.Trial, result: ProxyResult) -> None:
        record = result.to_json()
        for key in RESULT_ATTRS:
            trial.set_user_attr(key, record[key])
        trial.set_user_attr("budget", result.epochs_completed)
        trial.set_user_attr("dataset", record["dataset"]["name"])


def checkpoint_root(chosen: str | None, default: str | None = None) -> str | None:
    """Where a worker keeps checkpoints: `chosen` ('none' turns them off; a local path is
    made absolute, an object store's URL kept), else `default`."""
    if not chosen:
        return default
    if chosen.lower() == "none":
        return None
    return chosen if "://" in chosen else str(Path(chosen).resolve())


def checkpoint_folder(root: str, study: str, trial: int) -> str:
    """Where trial `trial` of `study` keeps its checkpoints under `root`."""
    return f"{root.rstrip('/')}/{study}/trial_{trial}"


def remove_checkpoints(root: str, study: str) -> bool:
    """Deletes a study's checkpoints once its search is done; False if there were none. (A
    study resumed later with more trials retrains the promotions it then makes, each saying
    so in one line.)
    `etils.epath` (Orbax's own path library) removes local folders and gs:// alike."""
    from etils import epath

    folder = epath.Path(root) / study
    if not folder.exists():
        return False
    folder.rmtree()
    return True


def _release_memory() -> None:
    # Each trial compiles a new network; without this a worker's host and device memory grows
    # with every architecture it has seen.
    import jax

    jax.clear_caches()
    gc.collect()


def _bracket(halving: Halving, trial: FrozenTrial) -> int:
    return int(trial.user_attrs.get(BRACKET, halving.bracket(trial.number)))


def promotions(config: SearchConfig, trials: Sequence[FrozenTrial], *,
               final: bool = False, band: float = 0.0) -> list[tuple[FrozenTrial, int]]:
    """Stopped trials that halving's promotion rule now sends on, with the rung they passed.

    At each rung of each bracket, the best max(1, n // eta) of its n results go on, and with
    a noise `band` those within it of the weakest of them (`halving.top`; no decision before
    the rung holds eta results, unless `final`); those
    of them that were stopped there and have no promotion yet (queued, running or done) are
    returned, best first.
    """
    halving = config.halving
    if halving is None:
        return []
    # Promoted once, whatever came of it: a promotion that failed on its own would fail again
    # (a dead worker's is retried by `retry`), and a surplus ask never ran.
    promoted = {t.user_attrs[PROMOTED_FROM] for t in trials
                if PROMOTED_FROM in t.user_attrs and not t.user_attrs.get("surplus")}
    out = []
    for bracket in range(halving.brackets):
        for rung in halving.rungs(config.proxy.epochs, bracket):
            key = f"rung_{rung}"
            here = [t for t in trials if key in t.user_attrs and _bracket(halving, t) == bracket]
            chosen = halving_lib.top([t.user_attrs[key] for t in here],
                                     config.objective.directions, halving.eta, final=final,
                                     band=band)
            out += [(here[i], rung) for i in chosen
                    if here[i].user_attrs.get("stopped_at") == rung
                    and here[i].state == TrialState.PRUNED and here[i].number not in promoted]
    return out


def promote(study: optuna.Study, config: SearchConfig, trial: FrozenTrial, rung: int) -> None:
    """Queues the stopped `trial` again, to be judged from the rung after `rung` on."""
    assert config.halving is not None, "only halving stops and promotes trials"
    attrs = {k: v for k, v in trial.user_attrs.items()
             if k in ("reference", "coefficients", LATTICE)}  # a lattice point stays exact
    attrs.update({PROMOTED_FROM: trial.number, PROMOTED_RUNG: rung,
                  BRACKET: _bracket(config.halving, trial)})
    study.enqueue_trial(trial.params, user_attrs=attrs)


# ----------------------------------------------------------------------------- worker


@dataclasses.dataclass
class WorkerReport:
    trained: int = 0  # new trials trained (to the end or to a rung)
    rejected: int = 0
    failed: int = 0
    promoted: int = 0  # stopped trials that halving resumed and this worker retrained
    climbed: int = 0  # directions this worker trained again at a larger factor
    duplicates: int = 0  # proposals of a network already trained (its result reused)
    stopped: str | None = None  # why the worker stopped before the budget was reached


def repeated_failure(trials: Sequence[FrozenTrial], *, since: int = -1,
                     limit: int = MAX_FAILURES_IN_A_ROW) -> str | None:
    """Why the search must stop, if the last `limit` trainings (trials after number `since`,
    in the order they finished) all failed for a reason of their own; else None.

    Only trainings count: rejections, proposals of a trained network and surplus asks train
    nothing, and a trial failed because its worker died or was interrupted says nothing about
    the next; those are passed over, neither failures nor successes.
    """
    trainings = sorted(
        (t for t in trials if t.number > since and t.datetime_complete is not None
         and (FAILURE in t.user_attrs if t.state == TrialState.FAIL
              else "rejected" not in t.user_attrs and "duplicate_of" not in t.user_attrs)),
        key=lambda t: (t.datetime_complete, t.number))
    last = trainings[-limit:]
    if len(last) < limit or any(t.state != TrialState.FAIL for t in last):
        return None
    reason = last[-1].user_attrs[FAILURE]
    same = all(t.user_attrs[FAILURE].split(":")[0] == reason.split(":")[0] for t in last)
    numbers = ", ".join(str(t.number) for t in last)
    return (f"{limit} trainings in a row failed (trials {numbers}), "
            f"{'all with' if same else 'the last with'} {reason}; the study is kept: fix the "
            f"cause and run the command again to resume")


def _check_failures(study: optuna.Study, trials: Sequence[FrozenTrial], since: int) -> None:
    """Raises `Stopped` when the study's last trainings all failed, or when another worker
    stopped for that since this one started (`since`: the study's mark then); marks the stop
    so that every worker stops, and a resumed search counts afresh from there."""
    mark = study.user_attrs.get(FAILURE_STOP)
    if mark and mark["trial"] > since:
        raise Stopped(mark["reason"])
    reason = repeated_failure(trials, since=since)
    if reason is not None:
        last = max(t.number for t in trials if FAILURE in t.user_attrs)
        study.set_user_attr(FAILURE_STOP, {"trial": last, "reason": reason})
        raise Stopped(reason)


def failure_mark(study: optuna.Study) -> int:
    """The last trial of the study's latest stop for repeated failures (-1: none)."""
    mark = study.user_attrs.get(FAILURE_STOP)
    return int(mark["trial"]) if mark else -1


def check_runtime(study: optuna.Study, config: SearchConfig, mine: dict[str, Any]) -> None:
    """Refuses a worker whose host makes another recipe of the study's config than the
    study's first worker did (`runtime_signature`: backend, compute dtype, depthwise kernel,
    batch; also the device kind when latency is scored); records `mine` in a new study.

    A study resumed on other hardware, or a CPU worker joining GPU ones, would otherwise mix
    bfloat16 and float32 trainings (or batches of 128 and 96) in one ranking, silently.
    """
    theirs = study.user_attrs.get(RUNTIME)
    if theirs is None:
        study.set_user_attr(RUNTIME, mine)
        return
    keys = ["backend", "compute_dtype", "depthwise", "batch_size"]
    if config.objective.cost == "latency":
        keys.append("device_kind")
    differ = [f"{k} {theirs.get(k)} -> {mine.get(k)}" for k in keys if theirs.get(k) != mine[k]]
    if differ:
        raise UserError(
            f"study '{study.study_name}' was trained on {theirs.get('device_kind')} "
            f"x{theirs.get('device_count')}; this worker has {mine['device_kind']} "
            f"x{mine['device_count']} and would train another recipe ({', '.join(differ)}): "
            f"one study must not rank them together. Run it where it ran, pin proxy dtype, "
            f"depthwise and batch_size in the config, or start a new study with --study NAME")


def _say_to_stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def run_worker(config: SearchConfig, study: optuna.Study, *, trials: int,
               dataset: Dataset | None = None, runner: TrialRunner | None = None,
               poll_s: float = 2.0, max_duplicates: int = MAX_DUPLICATES_IN_A_ROW,
               say: Callable[[str], None] = _say_to_stderr,
               wait: Callable[[float], None] = time.sleep,
               checkpoints: str | None = None) -> WorkerReport:
    """Runs trials of `study` until `trials` count toward the budget and none is running.

    Every worker of a study, on any host, runs this same loop on the same storage.

    Raises:
        Stopped: `MAX_FAILURES_IN_A_ROW` trainings in a row across the study failed for a
            reason of their own (`repeated_failure`), here or on another worker.

    Args:
        max_duplicates: stop (saying so) after this many proposals in a row of networks
            already trained: the sampler finds nothing new near what it believes best.
        say: where the worker tells what it waits for (the budget is reached but another
            worker's trial is still running and may yet need a retry), or why it stops early.
        wait: sleeps between those polls (a replay's simulated clock passes its own).
        checkpoints: where halving's stopped trials leave checkpoints for their promotions
            (`TrialRunner`); None: promotions retrain from the first epoch.
    """
    runner = runner or TrialRunner(config, study, dataset, wait=wait, poll_s=poll_s,
                                   checkpoints=checkpoints)
    mine = (runtime_signature(config.proxy, runner.dataset)  # a replay trains nothing here
            if isinstance(runner, TrialRunner) and runner.train is None else None)
    if mine is not None:
        # Before the first trial: splits that cannot go on the devices as the config asks
        # are one line here, not a failure in every trial.
        train = training_split(config.proxy, runner.dataset)
        input_pipeline(config.proxy, runner.dataset.info,
                       lazy=isinstance(train.images, LazyImages))
    report, rejections_in_a_row, duplicates_in_a_row = WorkerReport(), 0, 0
    grid = registry.SAMPLERS[config.sampler].grid
    announced: set[int] = set()
    since = failure_mark(study)  # failures before a stop already reported do not count
    while True:
        trials_now = current_trials(study, config)
        _check_failures(study, trials_now, since)
        if mine is not None:
            # Every round, not once: two workers that start together on a new study may both
            # record their own; the one whose record did not stay is refused at its next round.
            check_runtime(study, config, mine)
        counted = sum(counts_toward_budget(t, grid) for t in trials_now)
        waiting = any(t.state == TrialState.WAITING for t in trials_now)
        running = [t for t in trials_now if t.state == TrialState.RUNNING]
        done = counted >= trials and not waiting
        # Promotions first (ASHA): a stopped trial that the rung now sends on is worth more
        # than a new one. Once the budget is spent and nothing runs, every decision is due.
        final = done and not running
        due = promotions(config, trials_now, final=final, band=runner.band)
        if due:
            promote(study, config, *due[0])
            continue
        # Then climbs to a larger factor, once no epoch promotion is pending below them.
        climbs = factor_rungs.promotions(config, trials_now, final=final, band=runner.band)
        if climbs:
            factor_rungs.promote(study, *climbs[0])
            continue
        if done:
            if running:
                for t in running:
                    if t.number not in announced:
                        announced.add(t.number)
                        say(_waiting_line(t, config.grace_s))
                wait(poll_s)  # a running trial may still die, or stop and be promoted
                continue
            return report
        trial = study.ask()
        trial.set_user_attr(WORKER_MACHINE, _machine())
        trial.set_user_attr(WORKER_PID, os.getpid())
        trial.set_user_attr("worker", f"{socket.gethostname()}:{os.getpid()}")
        if _is_surplus(study, trial, trials, grid):
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=TrialState.FAIL)
            continue
        try:
            candidate = runner.propose(trial)
        except BaseException:
            study.tell(trial, state=TrialState.FAIL)  # never leave a trial running
            raise
        if isinstance(candidate, str):
            candidate = Candidate(None, {}, rejected=candidate)  # type: ignore[arg-type]
        if candidate.rejected:
            for key, value in candidate.attrs.items():  # what it would have been, and why not
                trial.set_user_attr(key, value)
            trial.set_user_attr("rejected", candidate.rejected)
            study.tell(trial, state=TrialState.PRUNED)
            report.rejected += 1
            rejections_in_a_row += 1
            if rejections_in_a_row >= MAX_REJECTIONS_IN_A_ROW:
                raise UserError(f"{rejections_in_a_row} candidates in a row were rejected "
                                f"before training (last: {candidate.rejected}); the target "
                                f"looks infeasible")
            continue
        rejections_in_a_row = 0
        try:
            state, values = runner.run(trial, candidate)
            study.tell(trial, values, state=state, skip_if_finished=True)
        except optuna.exceptions.UpdateFinishedTrialError:
            # Another worker missed this trial's heartbeat and failed it; its retry redoes it.
            log.warning("trial %d was failed by another worker (heartbeat late)", trial.number)
            continue
        except BaseException as e:
            # Ctrl-C or a bug: the trial is failed and the study survives; an interrupted
            # trial is queued again so that resuming the command finishes it.
            trial.set_user_attr("error", f"{type(e).__name__}: {e}"[:500])
            study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
            if isinstance(e, KeyboardInterrupt):
                frozen = study.get_trials(deepcopy=False)[trial.number]
                retry(study, frozen, config.max_retries)
            raise
        attrs = trial.user_attrs  # as `runner.run` left them
        duplicate = "duplicate_of" in attrs
        duplicates_in_a_row = duplicates_in_a_row + 1 if duplicate else 0
        if state == TrialState.FAIL:
            report.failed += 1
        elif duplicate:
            report.duplicates += 1
        elif factor_rungs.is_climb(attrs, factor_rungs.factors_of(config)):
            report.climbed += 1
        elif PROMOTED_FROM in attrs:
            report.promoted += 1
        else:
            report.trained += 1
        if duplicates_in_a_row >= max_duplicates and not grid:
            report.stopped = (
                f"the last {duplicates_in_a_row} proposals were networks already trained "
                f"(rounding maps many directions to one network); the study holds "
                f"{sum(counts_toward_budget(t) for t in study.get_trials(deepcopy=False))} of "
                f"{trials} distinct trainings")
            say(f"stopping: {report.stopped}")
            return report


def _waiting_line(trial: FrozenTrial, grace_s: float) -> str:
    now = time.time()
    last = last_heartbeat(trial, now)
    deadline = time.strftime("%H:%M:%S", time.localtime(last + grace_s))
    return (f"waiting for trial {trial.number} (worker {trial.user_attrs.get('worker', '?')}, "
            f"last heartbeat {now - last:.0f} s ago): it is failed and retried if still silent "
            f"at {deadline} (grace_s={grace_s:g})")


def _is_surplus(study: optuna.Study, trial: optuna.Trial, trials: int, grid: bool) -> bool:
    """Whether `trials` counted trials precede this one (two workers asked at once), or this
    promotion was queued twice (two workers saw it due at once)."""
    earlier = [t for t in study.get_trials(deepcopy=False) if t.number < trial.number]
    source = trial.user_attrs.get(PROMOTED_FROM)
    if source is not None:
        return any(t.user_attrs.get(PROMOTED_FROM) == source and t.state != TrialState.FAIL
                   for t in earlier)
    return sum(counts_toward_budget(t, grid) for t in earlier) >= trials
