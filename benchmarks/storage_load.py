"""Load and faults on a study's storage: N worker processes, K of them killed mid-trial.

    python benchmarks/storage_load.py --storage journal|postgresql|grpc --workers N \
        --trials T --kills K [--time-scale S] [--database URL] --json

Each worker is the real controller (`controller.run_worker`) with a stand-in trainer
(`TrialRunner(train=...)`) that sleeps a training time drawn from the recorded MNIST table's
(scaled by S) and reports a score, so what is measured is the storage and the controller, not
JAX. The study samples B0's directions at free cost (`match=None`), far more distinct networks
than T (duplicates do not count toward the budget), without halving. K times, spread over the
run, a worker that is running a trial is killed with SIGKILL and a replacement started; with
grpc, the proxy is also killed and restarted once, halfway. postgresql and grpc need a
database (`--database`, else $EFFSEARCH_TEST_POSTGRES_URL); grpc puts `effsearch
storage-proxy` in front of it.

Progress goes to stderr; the last line of stdout is one JSON object: `storage`, `workers`,
`budget`, `counted` (trials counting toward the budget), `trained_twice` (networks completed
by more than one trial, killed attempts excluded), `lost` (trainings a live worker finished
whose result the storage does not hold), `killed`, `killed_mid_trial` (kills that cut a
trial short: one landing between two trials has nothing to retry), `retried` (trials retried
after their worker died), `failed` (surplus asks, beyond the budget and never trained, apart:
`surplus`), `proxy_restarts`, `trials_per_s`, `wall_s`, `peak_connections` (the
database's connections, sampled every 0.2 s; null for the journal). With 32 workers on 2
cores, ask/tell latency measures the CPU as much as the storage.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zlib
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
RECORDED = ROOT / "experiments" / "results" / "mnist5k" / "direction_table.jsonl"


def config(name: str, trials: int) -> Any:
    """B0's directions at free cost to phi = 2, channels and resolution unrounded: 352 of
    400 random proposals are distinct networks (238 with the default rounding at phi = 1)."""
    from search.config import CoefficientSearch, Objective, SearchConfig
    from trainers.config import ProxyConfig

    return SearchConfig(
        name=name, search=CoefficientSearch(baseline="efficientnet-b0", match=None, phi=2.0,
                                            references=(), channel_divisor=1,
                                            resolution_multiple=1),
        proxy=ProxyConfig(dataset="digits", epochs=1, resolution=64),
        objective=Objective(kind="metric"), sampler="random", trials=trials,
        startup_trials=0, halving=None, heartbeat_s=1.0, grace_s=30.0, max_retries=3)


def recorded_seconds() -> list[float]:
    """Training times of the recorded MNIST direction table (wall seconds per training)."""
    rows = [json.loads(line) for line in RECORDED.read_text().splitlines()[1:] if line]
    return [float(r["wall_s"]) for r in rows if "wall_s" in r] or [60.0]


class StandIn:
    """`TrialRunner(train=...)`: sleeps a recorded training time x `scale`, then reports a
    score; writes each finished training's trial number to `record` before returning it."""

    def __init__(self, scale: float, record: Path, seed: int) -> None:
        import numpy as np

        self.times = np.array(recorded_seconds()) * scale
        self.rng = np.random.default_rng(seed)
        self.record = record

    def __call__(self, proxy: Any, trial: Any, callback: Any) -> Any:
        from trainers.config import ProxyResult

        seconds = float(self.rng.choice(self.times))
        time.sleep(seconds)
        arch = trial.user_attrs.get("arch", "")
        score = (zlib.crc32(arch.encode()) % 1000) / 1000
        callback(1, {"epoch": 1, "val_top1": score})
        with open(self.record, "a") as f:  # before the tell: what a kill may lose
            f.write(f"{trial.number}\n")
            f.flush()
            os.fsync(f.fileno())
        nan = float("nan")
        return ProxyResult(
            resumed_at=None, status="ok", reason=None, val_top1=score, val_loss=nan,
            val_balanced_accuracy=nan, val_macro_f1=nan, val_worst_class_recall=nan,
            val_per_class_recall=[], test_top1=score, test_balanced_accuracy=None,
            train_class_counts=[], curve=[{"epoch": 1, "val_top1": score}],
            epochs_completed=1, steps=0, batch_size=proxy.batch_size, step_time_s=nan,
            images_per_s=nan, compile_s=0.0, init_s=0.0, wall_s=seconds, macs=0, params=0,
            activations=0, arch=arch, resolution=0, peak_memory_bytes=None,
            device="stand-in", seed=0, dataset={"name": "stand-in"}, config={})


def worker(args: argparse.Namespace) -> int:
    """One worker process: the real controller loop with the stand-in trainer."""
    from search import controller, storage
    from search.slots import SLOT_ENV

    slot = int(os.environ.get(SLOT_ENV, "0"))
    cfg = config(args.study, args.trials)
    store = storage.open_storage(args.url)
    study, _ = controller.open_study(cfg, store, args.study,
                                     sampler_seed=controller.worker_seed(cfg.seed, slot))
    runner = controller.TrialRunner(cfg, study, train=StandIn(args.time_scale,
                                                              Path(args.record), slot))
    controller.run_worker(cfg, study, trials=args.trials, runner=runner, poll_s=0.2)
    return 0


# ----------------------------------------------------------------------------- the driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Proxy:
    """`effsearch storage-proxy` in its own process, restartable."""

    def __init__(self, database: str, port: int, logs: Path) -> None:
        self.database, self.port, self.logs, self.starts = database, port, logs, 0
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        from search.storage.proxy import RetryingProxy

        self.starts += 1
        log = open(self.logs / f"proxy{self.starts}.log", "wb")  # noqa: SIM115 (the child's)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "search.cli", "storage-proxy", "--storage", self.database,
             "--host", "127.0.0.1", "--port", str(self.port)], cwd=ROOT, stdout=log,
            stderr=subprocess.STDOUT, env=os.environ | {"PYTHONPATH": str(ROOT)})
        RetryingProxy("127.0.0.1", self.port).wait_ready(60)

    def kill(self) -> None:
        if self.process is not None:
            self.process.kill()
            self.process.wait()


class Connections:
    """Samples the database's connection count every 0.2 s, from a thread."""

    def __init__(self, url: str) -> None:
        import sqlalchemy

        self.engine = sqlalchemy.create_engine(url, poolclass=sqlalchemy.pool.NullPool)
        self.peak, self._stop = 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import sqlalchemy

        query = sqlalchemy.text("SELECT count(*) FROM pg_stat_activity "
                                "WHERE datname = current_database()")
        while not self._stop.wait(0.2):
            try:
                with self.engine.connect() as c:
                    self.peak = max(self.peak, int(c.execute(query).scalar() or 0) - 1)
            except Exception:  # a full server refuses the sampler too: keep the peak
                continue

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        self.engine.dispose()
        return self.peak


def say(line: str) -> None:
    sys.stderr.write(f"[storage_load] {line}\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> dict[str, Any]:
    import optuna

    from search import controller, storage
    from search.slots import SLOT_ENV

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    work = Path(tempfile.mkdtemp(prefix="storage-load-"))
    database = args.database or os.environ.get("EFFSEARCH_TEST_POSTGRES_URL")
    if args.storage != "journal" and not database:
        raise SystemExit(f"--storage {args.storage} needs --database URL (PostgreSQL) or "
                         f"$EFFSEARCH_TEST_POSTGRES_URL")
    monitor_url = str(work / "load.journal") if args.storage == "journal" else database
    assert monitor_url is not None
    proxy = None
    url = monitor_url
    if args.storage == "grpc":
        proxy = Proxy(monitor_url, free_port(), work)
        proxy.start()
        url = f"grpc://127.0.0.1:{proxy.port}"
    name = f"load-{args.storage}-{uuid.uuid4().hex[:8]}"
    # Created once here, as `effsearch search` does, before the workers open it.
    controller.open_study(config(name, args.trials), storage.open_storage(url), name)
    connections = Connections(monitor_url) if args.storage != "journal" else None
    records: dict[int, Path] = {}
    procs: dict[int, tuple[subprocess.Popen, int]] = {}  # pid -> (process, slot)
    next_id = 0

    def spawn(slot: int) -> None:
        nonlocal next_id
        record = work / f"worker{next_id}.record"
        log = open(work / f"worker{next_id}.log", "wb")  # noqa: SIM115 (the child's)
        p = subprocess.Popen([sys.executable, __file__, "--worker", "--url", url, "--study",
                              name, "--trials", str(args.trials), "--time-scale",
                              str(args.time_scale), "--record", str(record)], stdout=log,
                             stderr=subprocess.STDOUT, env=os.environ | {SLOT_ENV: str(slot)})
        records[p.pid] = record
        procs[p.pid] = (p, slot)
        next_id += 1

    start = time.time()
    for slot in range(args.workers):
        spawn(slot)
    killed: list[tuple[int, int | None]] = []  # (pid, the trial it was running)
    restarted = False
    reader = storage.open_storage(monitor_url, create=False)
    last_report = 0.0
    while any(p.poll() is None for p, _ in procs.values()):
        time.sleep(0.2)
        trials = optuna.load_study(study_name=name, storage=reader).get_trials(deepcopy=False)
        counted = sum(controller.counts_toward_budget(t, False) for t in trials)
        done = sum(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
        if len(killed) < args.kills and done >= args.trials * (len(killed) + 1) / (
                args.kills + 1):
            running = [t for t in trials if t.state == optuna.trial.TrialState.RUNNING
                       and t.user_attrs.get("worker_pid") in procs
                       and procs[t.user_attrs["worker_pid"]][0].poll() is None]
            if running:
                pid = running[0].user_attrs["worker_pid"]
                os.kill(pid, signal.SIGKILL)
                procs[pid][0].wait()
                killed.append((pid, running[0].number))
                say(f"killed worker {pid} in trial {running[0].number}; a replacement starts")
                spawn(procs[pid][1])
        if proxy is not None and not restarted and done >= args.trials / 2:
            restarted = True
            proxy.kill()
            say("storage proxy killed; restarting it in 1 s")
            time.sleep(1.0)
            proxy.start()
        if time.time() - last_report > 5:
            last_report = time.time()
            say(f"{counted}/{args.trials} counted, {done} complete, "
                f"{time.time() - start:.0f} s")
    wall = time.time() - start
    peak = connections.stop() if connections is not None else None
    if proxy is not None:
        proxy.kill()
    trials = optuna.load_study(study_name=name, storage=reader).get_trials(deepcopy=False)
    state = optuna.trial.TrialState
    complete = [t for t in trials if t.state == state.COMPLETE
                and "duplicate_of" not in t.user_attrs]
    archs = [t.user_attrs.get("arch") for t in complete]
    # What a killed worker was training when it died (the snapshot the kill was chosen from
    # may be a trial older), which it could not tell.
    dead = {pid for pid, _ in killed}
    in_flight = {t.number for t in trials if t.user_attrs.get("worker_pid") in dead
                 and t.state != state.COMPLETE}
    finished = set()
    for record in records.values():
        if record.exists():
            finished |= {int(line) for line in record.read_text().split()}
    told = {t.number for t in trials if t.state == state.COMPLETE}
    lost = sorted(finished - told - in_flight)
    counted = sum(controller.counts_toward_budget(t, False) for t in trials)
    return {
        "storage": args.storage, "workers": args.workers, "budget": args.trials,
        "counted": counted, "trained_twice": len(archs) - len(set(archs)), "lost": len(lost),
        "killed": len(killed), "killed_mid_trial": len(in_flight),
        "retried": sum("retry_of" in t.user_attrs for t in trials),
        "failed": sum(t.state == state.FAIL and not t.user_attrs.get("surplus")
                      for t in trials),
        "surplus": sum(bool(t.user_attrs.get("surplus")) for t in trials),
        "proxy_restarts": max(0, proxy.starts - 1) if proxy else 0,
        "trials_per_s": counted / wall, "wall_s": wall, "peak_connections": peak,
        "time_scale": args.time_scale, "worker_exit_codes": sorted(
            {p.returncode for p, _ in procs.values() if p.pid not in dict(killed)}),
        "work": str(work)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--storage", choices=("journal", "postgresql", "grpc"),
                        default="journal")
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--trials", type=int, default=200)
    parser.add_argument("--kills", type=int, default=5)
    parser.add_argument("--time-scale", type=float, default=0.01,
                        help="recorded training seconds x this (default: %(default)s)")
    parser.add_argument("--database", help="the PostgreSQL URL (postgresql and grpc)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--study", help=argparse.SUPPRESS)
    parser.add_argument("--record", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return worker(args)
    if args.workers < 1 or args.trials < 1 or args.kills < 0 or args.time_scale < 0:
        parser.error("--workers and --trials must be >= 1, --kills and --time-scale >= 0")
    result = run(args)
    if not args.json:
        for key, value in result.items():
            say(f"{key}: {value}")
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
