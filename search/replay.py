"""Searches replayed against a recorded table of trainings instead of training (issue 15).

The HPO/NAS field measures optimizers on tabulated benchmarks (NAS-Bench-201, HPOBench,
YAHPO Gym, Syne Tune's blackbox repository): a space is evaluated densely once, then every
optimizer is run against the table many times in simulated time. Here the table holds
scaling directions trained at a matched cost (experiments/direction_table.py), and the search
replayed is the real one: `run_worker` with its samplers, enqueued references and design,
halving and promotions, twins and budget, only with `train_and_evaluate` replaced by a lookup.

A trial's direction is looked up as the nearest table direction (Euclidean on the shares) at
the study's cost factor, among the directions within the search's cost tolerance (regret is
measured against those too); its training seed is drawn per trial (a promotion keeps its
original's); its result at epoch e is that row's recorded curve, and it costs the row's
recorded time: initialisation and compile, then one recorded epoch at a time, on a simulated
clock shared by the study's workers (`SimulatedClock`), so asynchronous workers see results in
the order their recorded times imply. Syne Tune's simulator backend and OptunaHub's
asynchronous simulator do the same for their own tuners; neither drives effsearch's worker
loop, and neither installs offline here, hence this small clock.

Table format (JSON lines, one training per line, `TABLE_VERSION`): factor, part, seed,
shares [depth, width, resolution], alpha, beta, gamma, phi, arch, resolution, macs, params,
activations, match_ratio, epochs, curve (validation top-1 per epoch), val_top1, test_top1,
init_s, compile_s, wall_s.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import heapq
import itertools
import json
import math
import multiprocessing
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

TABLE_VERSION = 1
ROW_FIELDS = ("factor", "part", "seed", "shares", "alpha", "beta", "gamma", "phi", "arch",
              "resolution", "macs", "params", "activations", "match_ratio", "epochs", "curve",
              "val_top1", "test_top1", "val_balanced_accuracy", "init_s", "compile_s",
              "wall_s")


def rows_of_study(trials: Iterable[Any], *, factor: float, part: str, seed: int,
                  epochs: int) -> list[dict[str, Any]]:
    """Table rows from a finished table study: every direction trained to the full budget.

    A direction that rounds to a network trained before was not trained again: its row is that
    training (the controller copied the result), as a replayed search would get it. Rejected
    candidates and failures have no row, and a direction proposed twice (a reference that is
    also a lattice point) has one.
    """
    rows, seen = [], set()
    for t in sorted(trials, key=lambda t: t.number):
        a = t.user_attrs
        if ("rejected" in a or a.get("status") != "ok"
                or a.get("epochs_completed", a.get("budget")) != epochs):
            continue
        key = tuple(round(a[f"{d}_share"], 6) for d in ("depth", "width", "resolution"))
        if key in seen:
            continue
        seen.add(key)
        rows.append({
            "factor": factor, "part": part, "seed": seed,
            "shares": [a["depth_share"], a["width_share"], a["resolution_share"]],
            **{k: a[k] for k in ("alpha", "beta", "gamma", "phi", "arch", "resolution", "macs",
                                 "params", "activations", "match_ratio")},
            "epochs": epochs, "curve": [c["val_top1"] for c in a["curve"]],
            **{k: a[k] for k in ("val_top1", "test_top1", "init_s", "compile_s", "wall_s")},
            "val_balanced_accuracy": a.get("val_balanced_accuracy")})
    return rows


class RecordedResult:
    """A table row standing in for the `ProxyResult` of its training (the fields a
    comparison reads); a row recorded before `val_balanced_accuracy` was kept has NaN."""

    status = "ok"

    def __init__(self, row: dict[str, Any]) -> None:
        self.row = row
        self.val_top1, self.test_top1 = row["val_top1"], row["test_top1"]
        self.val_balanced_accuracy = row.get("val_balanced_accuracy", math.nan)
        self.wall_s = row["wall_s"]

    def __getattr__(self, name: str) -> Any:  # another metric the study ranked by
        try:
            return self.row[name]
        except KeyError:
            raise AttributeError(name) from None


def table_header(config: Any, tolerance: float) -> dict[str, Any]:
    """What a table's rows need to be retrained and replayed, from one of its studies' search
    configs: the whole proxy (each row carries its own seed, so the header's is 0), the
    baseline, the rounding, and the cost tolerance of the search the table stands in for.
    `effsearch train ARCH --proxy TABLE --seed S` retrains a row."""
    proxy = dataclasses.asdict(dataclasses.replace(config.proxy, seed=0))
    search = config.search
    return {"dataset": proxy["dataset"], "proxy": proxy, "baseline": search.baseline,
            "rounding": {"depth": "ceil", "channel_divisor": search.channel_divisor,
                         "resolution_multiple": search.resolution_multiple,
                         "match": search.match},
            "tolerance": tolerance}


@dataclasses.dataclass(frozen=True)
class Direction:
    """One direction of the table at one factor: its trainings (one per seed)."""

    shares: tuple[float, float, float]
    rows: tuple[dict[str, Any], ...]

    @property
    def mean(self) -> float:
        """Mean final validation top-1 over the seeds: the score a search is judged by."""
        return float(np.mean([r["val_top1"] for r in self.rows]))

    @property
    def std(self) -> float:
        return float(np.std([r["val_top1"] for r in self.rows], ddof=1)) if len(
            self.rows) > 1 else 0.0

    @property
    def test_mean(self) -> float:
        return float(np.mean([r["test_top1"] for r in self.rows]))


@dataclasses.dataclass(frozen=True)
class Table:
    """The recorded trainings, grouped by factor and direction; `header` is what the table's
    first line says of how they were trained (`table_header`)."""

    rows: tuple[dict[str, Any], ...]
    header: dict[str, Any] = dataclasses.field(default_factory=dict, compare=False)

    @classmethod
    def load(cls, path: str | Path) -> Table:
        with open(path) as f:
            header = json.loads(f.readline())
            if header.get("table_version") != TABLE_VERSION:
                raise ValueError(f"{path}: table version {header.get('table_version')}, this "
                                 f"effsearch reads version {TABLE_VERSION}")
            rows = [json.loads(line) for line in f if line.strip()]
        return cls(tuple(rows), header)

    def save(self, path: str | Path, **header: Any) -> None:
        """Writes the rows as JSON lines after a header line: the version, the row fields and
        `header` (`table_header`'s fields)."""
        with open(path, "w") as f:
            f.write(json.dumps({"table_version": TABLE_VERSION, "fields": ROW_FIELDS,
                                **header}) + "\n")
            for row in self.rows:
                f.write(json.dumps(row) + "\n")

    def factors(self) -> list[float]:
        return sorted({r["factor"] for r in self.rows})

    def reliability(self, factor: float, metric: str = "val_top1") -> Any:
        """The test-retest reliability at `factor` (`search.reliability.Reliability`) over
        its distinct networks trained with every seed of the factor (directions that round
        to one network count once), or None with fewer than 3 of them or one seed."""
        from search.reliability import summarize

        rows = [r for r in self.rows if math.isclose(r["factor"], factor)]
        seeds = sorted({r["seed"] for r in rows})
        by_arch: dict[str, dict[int, dict[str, Any]]] = {}
        for r in rows:
            by_arch.setdefault(r["arch"], {})[r["seed"]] = r
        networks = [{"arch": arch, "shares": runs[seeds[0]]["shares"],
                     "ratio": runs[seeds[0]]["match_ratio"],
                     "scores": [runs[s][metric] for s in seeds]}
                    for arch, runs in sorted(by_arch.items()) if len(runs) == len(seeds)]
        if len(seeds) < 2 or len(networks) < 3:
            return None
        return summarize(metric, factor, seeds, networks)

    def recorded(self, proxy: Any) -> Callable[[str, int], Any]:
        """(arch, seed) -> the table's training of that network with that seed, as a result
        (`RecordedResult`), or None: for retraining only what the table lacks (a ladder
        reusing the table's rows). The table must have been trained with `proxy`'s recipe
        (seeds aside); otherwise its rows would not be the trainings asked for.

        Raises:
            UserError: the header's proxy differs from `proxy`, naming the fields.
        """
        from space import UserError

        if "proxy" not in self.header:
            raise UserError("the table's header holds no proxy: export it again "
                            "(experiments/export_direction_table.py)")
        mine = dataclasses.asdict(proxy)
        theirs = dataclasses.asdict(type(proxy).from_json(self.header["proxy"]))
        # The arch is each row's, the seed each row's; both pipelines train the same.
        differ = sorted(k for k in mine if k not in ("arch", "seed", "input_pipeline")
                        and theirs[k] != mine[k])
        if differ:
            raise UserError(f"the table was trained with another recipe ({', '.join(differ)} "
                            f"differ): its rows are not these trainings")
        rows = {(r["arch"], r["seed"]): r for r in self.rows}

        def lookup(arch: str, seed: int) -> RecordedResult | None:
            row = rows.get((arch, seed))
            return None if row is None else RecordedResult(row)
        return lookup

    def directions(self, factor: float, tolerance: float | None = None) -> list[Direction]:
        """The directions recorded at `factor`; with `tolerance`, only those whose network's
        realized cost is that close to the factor: what a search with that tolerance may
        train (the others it rejects, so they cannot define its regret)."""
        groups: dict[tuple[float, ...], list[dict[str, Any]]] = {}
        for r in self.rows:
            if math.isclose(r["factor"], factor) and (
                    tolerance is None or abs(r["match_ratio"] / factor - 1) <= tolerance):
                groups.setdefault(tuple(round(s, 6) for s in r["shares"]), []).append(r)
        return [Direction(k, tuple(sorted(v, key=lambda r: r["seed"])))  # type: ignore[arg-type]
                for k, v in sorted(groups.items())]

    def nearest(self, shares: Sequence[float], factor: float,
                tolerance: float | None = None) -> Direction:
        """The recorded direction closest to `shares` (Euclidean on the simplex), among those
        within `tolerance`."""
        return min(self.directions(factor, tolerance),
                   key=lambda d: sum((a - b) ** 2 for a, b in zip(d.shares, shares,
                                                                  strict=True)))

    def best(self, factor: float, tolerance: float | None = None) -> Direction:
        return max(self.directions(factor, tolerance), key=lambda d: d.mean)

    def pooled_se(self, factor: float, tolerance: float | None = None) -> float:
        """One standard error of the best direction's mean at `factor`: the seed std pooled
        over the directions (root mean variance) over the square root of the best's seed
        count; 0 where no direction has two seeds."""
        variances = [d.std**2 for d in self.directions(factor, tolerance) if len(d.rows) > 1]
        if not variances:
            return 0.0
        return math.sqrt(float(np.mean(variances)) / len(self.best(factor, tolerance).rows))

    def hypervolume_gap(self, found: Iterable[Sequence[float]], factor: float,
                        cost: str = "params", tolerance: float | None = None) -> float:
        """1 - HV(found) / HV(table) for (mean val top-1 up, `cost` down), reference point
        (the table's worst val, its largest cost); `found` are directions (shares)."""
        directions = self.directions(factor, tolerance)
        ref = (min(d.mean for d in directions), max(d.rows[0][cost] for d in directions))
        whole = _hypervolume([(d.mean, d.rows[0][cost]) for d in directions], ref)
        if whole == 0:  # every direction has the same cost or the same score
            return 0.0
        mine = [self.nearest(s, factor, tolerance) for s in found]
        return 1.0 - _hypervolume([(d.mean, d.rows[0][cost]) for d in mine], ref) / whole

    def regret(self, shares: Sequence[float], factor: float,
               tolerance: float | None = None) -> float:
        """Normalized regret of recommending `shares`: (best - its mean) / (best - worst),
        best and worst over the directions within `tolerance`."""
        means = [d.mean for d in self.directions(factor, tolerance)]
        spread = max(means) - min(means)
        mine = self.nearest(shares, factor, tolerance).mean
        return (max(means) - mine) / spread if spread else 0.0


def _hypervolume(points: Sequence[tuple[float, float]], ref: tuple[float, float]) -> float:
    """Area dominated by (score up, cost down) points within the reference corner. Two
    objectives need only a sweep (Optuna's hypervolume code is private API)."""
    area, best, points = 0.0, ref[0], sorted(points, key=lambda p: p[1])
    if not points:
        return 0.0
    for (score, cost), nxt in zip(points, [*(p[1] for p in points[1:]), ref[1]], strict=True):
        best = max(best, score)
        area += (best - ref[0]) * max(0.0, min(nxt, ref[1]) - cost)
    return area


class SimulatedClock:
    """Simulated time shared by the worker threads of one replayed study.

    Exactly one worker runs at a time, in an order fixed by the recorded times alone, so a
    replay is deterministic: worker i starts when `enter(i)` is its turn (in index order); a
    worker that "trains" sleeps on the clock; when no worker is runnable, time jumps to the
    earliest wake-up. A worker polling for others' trials (`wait`) runs again after the next
    event (a wake-up or a worker's end) instead of at a time of its own.
    """

    def __init__(self, workers: int) -> None:
        self.now = 0.0
        self._cv = threading.Condition()
        self._runnable: collections.deque[int] = collections.deque(range(workers))
        self._timed: list[tuple[float, int]] = []  # (wake time, ticket)
        self._pollers: list[int] = []
        self._tickets = itertools.count(workers)
        self._running: int | None = None
        with self._cv:
            self._schedule()

    def enter(self, worker: int) -> None:
        """Blocks worker `worker` (0, 1, ...) until its first turn."""
        with self._cv:
            while self._running != worker:
                self._cv.wait()

    def sleep(self, seconds: float) -> None:
        with self._cv:
            ticket = next(self._tickets)
            heapq.heappush(self._timed, (self.now + max(0.0, seconds), ticket))
            self._yield(ticket)

    def wait(self, _seconds: float = 0.0) -> None:
        """Sleeps until the next event of another worker (its wake-up or its end)."""
        with self._cv:
            ticket = next(self._tickets)
            self._pollers.append(ticket)
            self._yield(ticket)

    def done(self) -> None:
        """The running worker has returned: the next one runs."""
        with self._cv:
            self._running = None
            self._schedule()

    def _yield(self, ticket: int) -> None:
        self._running = None
        self._schedule()
        while self._running != ticket:
            self._cv.wait()

    def _schedule(self) -> None:
        if not self._runnable:
            if self._timed:
                when, ticket = heapq.heappop(self._timed)
                self.now = max(self.now, when)
                self._runnable.append(ticket)
            self._runnable.extend(self._pollers)  # pollers look again after every event
            self._pollers.clear()
        if self._runnable:
            self._running = self._runnable.popleft()
        self._cv.notify_all()


class ReplayTrainer:
    """Stands in for `train_and_evaluate` (`TrialRunner(train=...)`): a trial's result is the
    recorded training of the nearest table direction, for a seed drawn per trial.

    Args:
        table: the recorded trainings.
        factor: the study's cost factor (its `CoefficientSearch.growth`); a trial queued at
            another factor (factor rungs) is looked up there.
        seed: the replay's seed (the training-seed draws; the sampler has its own).
        clock: simulated time; None runs without one (every trial costs nothing).
        tolerance: look up only directions within the search's cost tolerance (a proposal
            the search accepted must not return the result of a network it would reject).
        resume: a promotion continues after its rung, as from the checkpoint its original
            left (the real search's default); False: it retrains from the first epoch.
    """

    def __init__(self, table: Table, factor: float, seed: int,
                 clock: SimulatedClock | None = None, tolerance: float | None = None,
                 resume: bool = True) -> None:
        self.table, self.factor, self.seed, self.clock = table, factor, seed, clock
        self.tolerance, self.resume = tolerance, resume
        self.spent_s = 0.0  # recorded seconds of every replayed trial, summed
        self.spent_epochs = 0
        self.spent_macs = 0.0  # compute: MACs x epochs (per image) of every replayed epoch

    def __call__(self, proxy: Any, trial: Any, callback: Callable[[int, dict], None]) -> Any:
        from trainers.config import ProxyResult  # no JAX
        from trainers.proxy import Stop

        a = trial.user_attrs
        shares = (a["depth_share"], a["width_share"], a["resolution_share"])
        direction = self.table.nearest(shares, float(a.get("factor", self.factor)),
                                       self.tolerance)
        # A promotion continues its original's training and a retry redoes it: same seed.
        original = int(a.get("promoted_from", a.get("retry_of", trial.number)))
        row = direction.rows[np.random.default_rng([self.seed, original]).integers(
            len(direction.rows))]
        setup = row["init_s"] + row["compile_s"]
        per_epoch = (row["wall_s"] - setup) / row["epochs"]
        self._spend(setup, 0)
        curve, epochs = [], min(proxy.epochs, row["epochs"])
        done = int(a.get("promoted_rung", 0)) if self.resume else 0
        for epoch in range(1, epochs + 1):
            metrics = {"epoch": epoch, "val_top1": row["curve"][epoch - 1]}
            curve.append(metrics)
            if epoch <= done:  # trained by its original, read from the checkpoint
                continue
            self._spend(per_epoch, 1, row["macs"])
            try:
                callback(epoch, metrics)  # may raise optuna.TrialPruned: the caller's
            except Stop:
                break
        full = len(curve) == row["epochs"]
        nan = float("nan")
        return ProxyResult(
            resumed_at=done or None,
            status="ok", reason=None, val_top1=curve[-1]["val_top1"], val_loss=nan,
            val_balanced_accuracy=nan, val_macro_f1=nan, val_worst_class_recall=nan,
            val_per_class_recall=[], test_top1=row["test_top1"] if full else None,
            test_balanced_accuracy=None, train_class_counts=[], curve=curve,
            epochs_completed=len(curve), steps=0, batch_size=proxy.batch_size,
            step_time_s=nan, images_per_s=nan, compile_s=row["compile_s"],
            init_s=row["init_s"], wall_s=setup + per_epoch * len(curve), macs=row["macs"],
            params=row["params"], activations=row["activations"], arch=row["arch"],
            resolution=row["resolution"], peak_memory_bytes=None, device="replay",
            seed=int(row["seed"]), dataset={"name": "replay"}, config={})

    def _spend(self, seconds: float, epochs: int, macs: float = 0.0) -> None:
        self.spent_s += seconds
        self.spent_epochs += epochs
        self.spent_macs += macs * epochs
        if self.clock is not None:
            self.clock.sleep(seconds)


@dataclasses.dataclass(frozen=True)
class ReplayOutcome:
    """One replayed search: what it recommends and what it spent getting there.

    `trace` has one point per finished trial, in simulated order: (full-budget trainings
    spent, recorded seconds spent, normalized regret of the incumbent or None before the
    first full-budget result).
    """

    recommended: tuple[float, float, float] | None
    regret: float
    trainings: float
    seconds: float
    elapsed_s: float  # simulated wall time: the seconds spent, divided among the workers
    full: tuple[tuple[float, float, float], ...]  # shares of every full-budget trial
    trace: tuple[tuple[float, float, float | None], ...]
    # The epochs of promotions that their stopped originals had trained (in full-budget
    # trainings): what continuing from checkpoints saves, or, replayed with resume=False,
    # what retraining from scratch spends again (it is then part of `trainings`).
    retrained: float = 0.0
    compute: float = 0.0  # MACs x epochs summed over every replayed epoch (per image)
    # (shares, factor, recorded val top-1, epochs, the table seed drawn) of each training,
    # full-budget or stopped by halving and never promoted (a promotion continues that
    # training; a proposal of a network already trained is not another training)
    scores: tuple[tuple[tuple[float, float, float], float, float, int, int], ...] = ()


# (simulated time, full-budget trainings spent, recorded seconds spent, MACs x epochs spent)
# when the trial ended
END_ATTR = "replay.end"


def replay(config: Any, table: Table, *, seed: int, workers: int = 1, dataset: Any = None,
           storage: Any = None, resume: bool = True) -> ReplayOutcome:
    """Runs the real search of `config` against `table` with `workers` simulated workers.

    The sampler and design are seeded with `seed` (through the config); training seeds are
    drawn from it too. The recommendation is the full-budget trial with the best recorded
    validation score (what `effsearch export` picks from a single-objective study; with factor
    rungs, at the largest factor reached), judged by its direction's mean over the table's
    seeds against the directions the search may train (within its cost tolerance), at the
    study's factor (with factor rungs, its largest).

    Args:
        storage: an Optuna storage holding the study (default: a new in-memory one). A study
            already there is resumed, as `effsearch search` resumes one: an interrupted
            trial's retry runs first, and time and training spent continue from what the
            study's replayed trials had spent.
        resume: promotions continue from their rung's checkpoint (the real search's
            default); False: they retrain from the first epoch.
    """
    import optuna

    from search import controller
    from search.factor_rungs import factors_of

    config = dataclasses.replace(config, seed=seed)
    factor = config.search.growth
    factors = factors_of(config) or (factor,)
    short = {r["epochs"] for r in table.rows if r["epochs"] < config.proxy.epochs}
    missing = [f for f in factors if not table.directions(f)]
    if short or missing:
        raise ValueError(f"the table cannot stand in for this search: it has "
                         f"{'rows of ' + str(sorted(short)) + ' epochs' if short else 'no rows'}"
                         f" at {', '.join(f'{f:g}x' for f in missing or factors)}, the search "
                         f"trains {config.proxy.epochs} epochs at "
                         f"{', '.join(f'{f:g}x' for f in factors)}")
    storage = storage if storage is not None else optuna.storages.InMemoryStorage()
    study, created = controller.open_study(config, storage, config.name)
    if created:
        controller.enqueue_design(study, config)
    clock = SimulatedClock(workers) if workers > 1 else None
    trainer = ReplayTrainer(table, factor, seed, clock, replay_tolerance(config), resume)
    epochs = config.proxy.epochs
    ends = [t.user_attrs[END_ATTR] for t in study.get_trials(deepcopy=False)
            if END_ATTR in t.user_attrs]
    if ends:  # resumed: continue the simulated time and the spend where they stopped
        trainer.spent_epochs = round(max(e[1] for e in ends) * epochs)
        trainer.spent_s = max(e[2] for e in ends)
        trainer.spent_macs = max((e[3] for e in ends if len(e) > 3), default=0.0)
        if clock is not None:
            clock.now = max(e[0] for e in ends)
    lock = threading.Lock()

    def stamped(proxy: Any, trial: Any, callback: Callable[[int, dict], None]) -> Any:
        try:
            return trainer(proxy, trial, callback)
        finally:
            with lock:
                now = clock.now if clock else trainer.spent_s
                trial.set_user_attr(END_ATTR, [now, trainer.spent_epochs / epochs,
                                               trainer.spent_s, trainer.spent_macs])

    def work(index: int = 0) -> None:
        if clock is not None:
            clock.enter(index)
        mine, _ = controller.open_study(config, storage, config.name)
        try:
            wait = clock.wait if clock else (lambda _: None)
            runner = controller.TrialRunner(config, mine, dataset, train=stamped, wait=wait,
                                            poll_s=0.0)
            controller.run_worker(config, mine, trials=controller.budget(config),
                                  runner=runner, poll_s=0.0, say=lambda _: None, wait=wait)
        finally:
            if clock is not None:
                clock.done()

    if workers == 1:
        work()
    else:
        threads = [threading.Thread(target=work, args=(i,)) for i in range(workers)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return _outcome(study, table, factors, epochs, trainer,
                    clock.now if clock else trainer.spent_s, replay_tolerance(config))


def replay_many(jobs: Sequence[tuple[Any, int, int]], table: Table, *, processes: int = 1,
                dataset: Any = None) -> Iterator[ReplayOutcome]:
    """`replay(config, table, seed=seed, workers=workers)` for each (config, seed, workers)
    job, yielded in job order, in `processes` processes (each replay is single-threaded
    Python, so processes, not threads, use more cores). Children are spawned, not forked:
    the parent may hold JAX's and Optuna's threads."""
    if processes <= 1:
        for config, seed, workers in jobs:
            yield replay(config, table, seed=seed, workers=workers, dataset=dataset)
        return
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(processes, mp_context=context,
                                                initializer=_child_init,
                                                initargs=(table, dataset)) as pool:
        yield from pool.map(_child_replay, jobs, chunksize=1)


_CHILD: dict[str, Any] = {}  # the table and dataset of a `replay_many` child process


def _child_init(table: Table, dataset: Any) -> None:
    _CHILD.update(table=table, dataset=dataset)


def _child_replay(job: tuple[Any, int, int]) -> ReplayOutcome:
    config, seed, workers = job
    return replay(config, _CHILD["table"], seed=seed, workers=workers,
                  dataset=_CHILD["dataset"])


def replay_tolerance(config: Any) -> float | None:
    """The cost tolerance of the search (None when it does not match costs)."""
    return config.search.tolerance if config.search.match else None


def _outcome(study: Any, table: Table, factors: Sequence[float], epochs: int,
             trainer: ReplayTrainer, elapsed_s: float, tolerance: float | None
             ) -> ReplayOutcome:
    """The recommendation as it stood after each trial: the best full-budget score at the
    largest factor reached so far, judged at the study's largest factor."""
    from optuna.trial import TrialState

    from search.halving import PROMOTED_FROM, PROMOTED_RUNG

    ended = sorted((t for t in study.get_trials(deepcopy=False) if END_ATTR in t.user_attrs),
                   key=lambda t: tuple(t.user_attrs[END_ATTR]))
    judge = factors[-1]
    continued = {t.user_attrs[PROMOTED_FROM] for t in ended if PROMOTED_RUNG in t.user_attrs}
    trace, best, best_key, full, scores = [], None, (-math.inf, -math.inf), [], []
    for t in ended:
        a = t.user_attrs
        shares = (a["depth_share"], a["width_share"], a["resolution_share"])
        factor = float(a.get("factor", factors[0]))
        if "duplicate_of" not in a and t.state in (TrialState.COMPLETE, TrialState.PRUNED) \
                and "val_top1" in a and t.number not in continued:
            scores.append((shares, factor, a["val_top1"], a["budget"], a["seed"]))
        if a.get("budget") == epochs and t.state == TrialState.COMPLETE:
            full.append(shares)
            key = (factor, a["val_top1"])
            if key > best_key:
                best_key, best = key, shares
        spent_trainings, spent_s = a[END_ATTR][1:3]
        trace.append((spent_trainings, spent_s,
                      None if best is None else table.regret(best, judge, tolerance)))
    regret = table.regret(best, judge, tolerance) if best is not None else 1.0
    retrained = sum(t.user_attrs.get(PROMOTED_RUNG, 0) for t in ended) / epochs
    return ReplayOutcome(best, regret, trainer.spent_epochs / epochs, trainer.spent_s,
                         elapsed_s, tuple(full), tuple(trace), retrained, trainer.spent_macs,
                         tuple(scores))
