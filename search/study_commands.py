"""`effsearch search | front | export | validate`: launching sweeps and using their results."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from search import (
    arguments,
    factor_rungs,
    kinds,
    noise_pick,
    records,
    registry,
    reliability,
    slots,
    storage,
)
from search.devices import (
    assignment,
    check_workers,
    describe,
    detect_host,
    worker_changes,
    worker_env,
)
from search.slots import SLOT_ENV
from search.terminal import EXIT_USER_ERROR, Stopped, console, err_console, print_json
from search.worker import CHECKPOINTS_ENV, EXIT_STOPPED, STORAGE_ENV
from space import UserError

__all__ = ["cmd_export", "cmd_front", "cmd_reliability", "cmd_search", "cmd_validate",
           "worker_env"]

# ----------------------------------------------------------------------------- search


class _StudyProgress:
    """A progress bar fed by polling the storage: trials done, best so far, ETA."""

    def __init__(self, study: Any, total: int, metric: str) -> None:
        self.study, self.total, self.metric = study, total, metric
        # Trials finished before this command started are not announced again.
        self.announced = {t.number for t in study.get_trials(deepcopy=False)
                          if records.trial_line(t, metric) is not None}
        self.bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(),
                            MofNCompleteColumn(), TextColumn("{task.fields[best]}"),
                            TimeRemainingColumn(), console=err_console(),
                            transient=True)
        self.task = self.bar.add_task(study.study_name, total=total, best="")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def update(self) -> None:
        # A line per finished trial, printed above the bar on a terminal and as plain lines
        # in a log file or CI (where the bar itself does not render).
        trials = self.study.get_trials(deepcopy=False)  # one read a poll, for both uses
        for t in trials:
            if t.number in self.announced:
                continue
            line = records.trial_line(t, self.metric)
            if line is not None:
                self.announced.add(t.number)
                self.bar.console.print(line, markup=False, highlight=False)
        rows = records.rows_of(trials, self.metric)
        best = max(rows, key=lambda r: r.score, default=None)
        text = f"best {self.metric} {best.score:.4f} (trial {best.trial})" if best else ""
        self.bar.update(self.task, completed=min(len(rows), self.total), best=text)

    def _poll(self) -> None:
        while not self._stop.wait(1.0):
            # A storage hiccup must not kill the bar; the next poll retries.
            with contextlib.suppress(Exception):
                self.update()

    def __enter__(self) -> _StudyProgress:
        self.bar.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        try:
            self.update()
        finally:
            self.bar.stop()


# What the command shows of its workers' logs: the waits on another worker's trial and why
# a worker stopped; the rest stays in `<workdir>/logs/`.
RELAYED = ("waiting for trial", "stopping:", "worker slot")
POLL_S = 0.5


def _checkpoints(args: argparse.Namespace, workdir: Path, config: Any) -> str | None:
    """Where promotions' checkpoints go: --checkpoints, else the work directory's
    checkpoints/ folder; None for 'none' or a study without halving."""
    from search import controller

    chosen = getattr(args, "checkpoints", None)
    # The default lies under the work directory, which the storage checks and makes.
    root = controller.checkpoint_root(chosen, str((workdir / "checkpoints").resolve()))
    if config.halving is None or root is None:
        return None
    if chosen and "://" not in root:  # an object store: Orbax opens it, nothing to check
        try:
            Path(root).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise UserError(f"--checkpoints {chosen}: cannot create it ({e.strerror}); give "
                            f"a folder every worker can write, or 'none'") from None
    return root


def _run_workers(args: argparse.Namespace, url: str, study: Any, total: int, workdir: Path,
                 say: Any, checkpoints: str | None = None) -> list[str]:
    """Starts `--workers` processes and waits; their logs go to `<workdir>/logs/`.

    Each worker is reaped the moment it exits (a worker killed with kill -9 would otherwise
    stay a zombie, which the dead-worker check would take for alive while an earlier worker
    is waited for), and the lines of `RELAYED` reach the command's terminal as they are
    written.

    Returns:
        Why workers stopped early (their "stopping: ..." lines; a killed or crashed worker's
        exit), which the command reports if the budget is left short.

    Raises:
        Stopped: a worker stopped the search (repeated failures); the others stop too.
    """
    name = study.study_name
    logs = workdir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    host = detect_host()  # once: nvidia-smi and /dev are read for every worker alike
    for line in describe(assignment(args.workers, host)):
        say(line)
    procs = []
    for i in range(args.workers):
        log_path = logs / f"{name}.worker{i}.log"
        with open(log_path, "ab") as log_file:
            start = log_file.tell()
            # The URL goes by environment, not argv: a password in argv shows in `ps`.
            env = (dict(os.environ) | worker_changes(i, args.workers, host, os.environ)
                   | {STORAGE_ENV: url, SLOT_ENV: str(i), CHECKPOINTS_ENV: checkpoints or ""})
            if args.allow_cpu and "JAX_PLATFORMS" not in os.environ:
                env.pop("JAX_PLATFORMS", None)  # the pin would refuse the CPU asked for
            command = [sys.executable, "-m", "search.worker", args.config, "--study", name,
                       "--trials", str(total)] + (["--allow-cpu"] if args.allow_cpu else [])
            procs.append((subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT,
                                           env=env), log_path, [start]))
    codes: list[int | None] = [None] * len(procs)
    stops: list[str] = []

    def relay() -> None:
        for i, (_, log, offset) in enumerate(procs):
            with open(log, "rb") as f:
                f.seek(offset[0])
                text = f.read()
            done = text.rfind(b"\n") + 1  # whole lines only; the rest is read next time
            offset[0] += done
            for line in text[:done].decode(errors="replace").splitlines():
                if line.startswith(RELAYED):
                    say(f"worker {i}: {line}")
                    if line.startswith("stopping:"):
                        stops.append(f"worker {i} {line}")

    try:
        while any(code is None for code in codes):
            codes = [c if c is not None else p.poll()
                     for c, (p, _, _) in zip(codes, procs, strict=True)]
            relay()
            time.sleep(POLL_S)
        relay()
    except KeyboardInterrupt:
        for p, _, _ in procs:  # workers fail and requeue their running trial on SIGINT
            p.send_signal(signal.SIGINT)
        for p, _, _ in procs:
            p.wait()
        raise
    for i, ((_, log, _), code) in enumerate(zip(procs, codes, strict=True)):
        if code not in (0, EXIT_STOPPED):
            tail = log.read_text(errors="replace").strip().splitlines()[-1:] or [""]
            if code == EXIT_USER_ERROR:  # a bad config or host: the others met the same
                raise UserError(f"worker {i}: {tail[0].removeprefix('effsearch worker: error: ')}"
                                f" (log: {log})")
            # Killed or crashed: its trial was retried by the others (or is on resume); the
            # command fails only if the budget is left short.
            stops.append(f"worker {i} exited with code {code}: {tail[0]} (log: {log})")
            say(f"worker {i} exited with code {code} (log: {log})")
    if EXIT_STOPPED in codes:
        from search.controller import FAILURE_STOP

        mark = study.user_attrs.get(FAILURE_STOP)
        raise Stopped(mark["reason"] if mark else f"a worker stopped the search (logs: {logs})")
    return stops


def cmd_search(args: argparse.Namespace) -> None:
    from search import controller
    from search.config import load_search_config
    from trainers import runtime

    config = load_search_config(args.config)
    if args.trials is not None:
        config = dataclasses.replace(config, trials=args.trials)
    if args.workers < 1:
        raise UserError(f"--workers must be >= 1, got {args.workers}")
    check_workers(args.workers)  # e.g. more workers than a TPU VM has chips
    name = args.study or config.name
    url = storage.storage_url(args.workdir, args.storage)
    if args.workers > 1 and storage.is_sqlite(url):
        raise UserError("SQLite cannot serve parallel workers (no row locks); use the default "
                        "journal file (--workdir) or PostgreSQL")
    workdir = Path(args.workdir or storage.DEFAULT_WORKDIR)
    checkpoints = _checkpoints(args, workdir, config)  # a bad folder: before any study exists
    store = storage.open_storage(url)
    # Only a worker samples: `--workers N` claims a slot in each worker process.
    slot = slots.claim(url, name) if args.workers == 1 else 0
    study, created = controller.open_study(
        config, store, name, sampler_seed=controller.worker_seed(config.seed, slot))
    if created:
        controller.enqueue_design(study, config)
    total = controller.budget(config)
    if config.noise_seeds > 1 and config.noise_std is None \
            and reliability.ATTR not in study.user_attrs:
        sys.stderr.write(f"note: noise_seeds={config.noise_seeds} needs the proxy's seed std "
                         f"for its pick after the search: `effsearch reliability "
                         f"{args.config} --store {name}` records it (or set noise_std)\n")
    start = time.time()
    if args.workers == 1:  # refuse a CPU fallback before loading the data
        runtime.start(args.allow_cpu)
    runner = controller.TrialRunner(config, study)  # loads the data, rejects infeasible targets
    with _StudyProgress(study, total, config.objective.metric) as progress:
        def say(line: str) -> None:
            progress.bar.console.print(line, markup=False, highlight=False)

        if args.workers == 1:
            runner.checkpoints = checkpoints
            report = controller.run_worker(config, study, trials=total, runner=runner, say=say)
            stops = [f"stopping: {report.stopped}"] if report.stopped else []
        else:
            stops = _run_workers(args, url, study, total, workdir, say, checkpoints)
    where = (f" --storage {storage.redact(args.storage)}" if args.storage
             else f" --workdir {args.workdir}" if args.workdir else "")
    rows = records.trial_rows(study)
    rejected = sum("rejected" in t.user_attrs for t in study.get_trials(deepcopy=False))
    factors = factor_rungs.factors_of(config)
    climbed = sum(r.promoted_from is not None and r.duplicate_of is None
                  and factor_rungs.is_climb({"factor": r.factor}, factors) for r in rows)
    promoted = sum(r.promoted_from is not None and r.duplicate_of is None for r in rows) - climbed
    duplicates = sum(r.duplicate_of is not None for r in rows)
    largest = factor_rungs.largest_reached(rows)
    best = max((r for r in rows if largest is None or r.factor == largest),
               key=lambda r: r.score, default=None)
    sys.stderr.write(
        f"study '{name}' in {storage.redact(url)}: "
        f"{_count(len(rows) - promoted - climbed - duplicates, 'trial')} trained"
        + (f" (and {promoted} resumed by halving's promotion)" if promoted else "")
        + (f", {_count(climbed, 'direction')} trained again at larger factors"
           if climbed else "")
        + (f", {_count(duplicates, 'proposal')} of networks already trained"
           if duplicates else "")
        + f", {rejected} rejected before training, {time.time() - start:.0f} s"
        + (f"; best {best.metric} {best.score:.4f} (trial {best.trial}"
           + (f", at {largest:g}x" if largest is not None else "") + ")" if best
           else "") + "\n")
    grid = registry.SAMPLERS[config.sampler].grid
    counted = sum(controller.counts_toward_budget(t, grid) for t in study.get_trials()
                  if t.state.is_finished())  # queued trials count only once they ran
    if counted < total:
        raise Stopped(f"the study holds {counted} of the {total} trainings asked for: "
                      + ("; ".join(stops) if stops else "no worker said why (see the logs in "
                                                         f"{workdir / 'logs'})")
                      + "; run the command again to go on")
    if checkpoints and not getattr(args, "keep_checkpoints", False) \
            and controller.remove_checkpoints(checkpoints, name):
        sys.stderr.write(f"removed the study's halving checkpoints from {checkpoints}\n")
    if config.ladder:
        runtime.start(args.allow_cpu)
        _ladder(study, factors=list(config.ladder), top=config.ladder_top,
                seeds=config.ladder_seeds)
    elif config.noise_seeds > 1 and rows:
        # The noise-aware pick: the directions seed noise cannot tell from the best get more
        # seeds (with factor rungs, at the largest factor: it chooses the confirmation's).
        std = noise_pick.seed_std(study, config)
        assert isinstance(config.search, kinds.CoefficientSearch)  # SearchConfig checks it
        factor = largest if largest is not None else config.search.growth
        top = noise_pick.within_band(rows, std, largest)
        if not top:
            raise Stopped("the noise-aware pick has no full-budget training to choose from; "
                          "run the command again with more --trials")
        sys.stderr.write(f"noise-aware pick: {_count(top, 'direction')} within "
                         f"{reliability.noise_band(std):.4f} of the best at {factor:g}x "
                         f"(seed std {std:.4f}) get {config.noise_seeds} seeds each\n")
        runtime.start(args.allow_cpu)
        _ladder(study, factors=[factor], top=top, seeds=config.noise_seeds, references=False)
    elif factors and largest is not None and config.ladder_seeds > 1:
        # Factor rungs: the best directions at the largest factor, confirmed with seeds (the
        # search's own training is the first; references are not retrained).
        runtime.start(args.allow_cpu)
        _ladder(study, factors=[largest], top=config.ladder_top, seeds=config.ladder_seeds,
                references=False)
    sys.stderr.write(f"next: effsearch front {name}{where}\n")


# ----------------------------------------------------------------------------- front


def _open(args: argparse.Namespace) -> tuple[Any, str]:
    url = storage.storage_url(args.workdir, args.storage)
    store = storage.open_storage(url, create=False)
    name = args.study
    if name and name.endswith(".py"):
        from search.config import load_search_config

        name = load_search_config(name).name
    if not name:
        names = storage.study_names(store)
        if len(names) != 1:
            raise UserError(f"name a study: {storage.redact(url)} holds "
                            f"{', '.join(names) if names else 'none'}")
        name = names[0]
    return storage.load_study(store, name, url), url


def cmd_front(args: argparse.Namespace) -> None:
    from search import ladder as ladder_lib

    study, _ = _open(args)
    config = records.study_config(study)
    kind = kinds.from_stored(config)
    cost = records.cost_field(config)
    rows = records.trial_rows(study)
    # A proposal of a network already trained reuses that trial's result: ranking it too
    # would list one network twice, so it is shown only with --all.
    reused = sum(r.duplicate_of is not None and r.full_budget for r in rows)
    if not args.all:
        rows = [r for r in rows if r.duplicate_of is None]
    ranked = records.front(rows, cost)
    pareto = config["objective"]["kind"] == "pareto"
    factor = getattr(kind, "growth", None)  # a coefficient search's cost factor
    if not pareto:  # one objective: the ranking by score (rank 0 = best; ties share one),
        # within each cost factor (factor rungs), the largest first
        ranked = [dataclasses.replace(r, rank=sum(o.score > r.score and o.factor == r.factor
                                                  for o in ranked))
                  for r in sorted(ranked, key=lambda r: (-(r.factor or 0), -r.score, r.trial))]
    shown = ranked if args.all or not pareto else [r for r in ranked if r.rank == 0]
    # With --all, then the trials `records.front` does not compare (stopped early: their
    # scores are at fewer epochs), unranked.
    compared = {r.trial for r in ranked}
    stopped = sorted((r for r in rows if args.all and r.trial not in compared),
                     key=lambda r: (-(r.budget or 0), -r.score, r.trial))
    shown = shown + stopped
    keys = ("trial", "factor", *kind.columns, "score", "val_top1", "macs", "params",
            "latency_ms", "resolution", "budget", "rank", "reference", "duplicate_of")
    # Measured by `effsearch reliability --store`: which scores seed noise cannot tell from
    # the best one.
    stored = study.user_attrs.get(reliability.ATTR) if not pareto else None
    noise = reliability.Reliability.from_json(stored) if stored else None
    if noise is not None and noise.metric != config["objective"]["metric"]:
        noise = None  # measured on another metric: it says nothing of these scores
    within: dict[int, bool] = {}
    # With factor rungs, only the rows at the factor the noise was measured at.
    measured = [r for r in ranked if noise and r.factor in (None, noise.factor)]
    if noise and measured:
        band = noise.noise_band
        top = max(r.score for r in measured)
        within = {r.trial: top - r.score <= band for r in measured}
    if args.json:
        out = [{k: r.get(k) for k in keys} | {"metric": r.metric, "arch": r.arch}
               | ({"within_noise": within.get(r.trial)} if within else {}) for r in shown]
        print_json(out)
    else:
        metric = config["objective"]["metric"]
        if pareto:
            shown_what = "all trials by front" if args.all else "Pareto front"
            title = (f"study '{study.study_name}': {shown_what} of {metric} vs {cost} "
                     f"({_count(len(ranked), 'full-budget trial')})")
        else:
            matched = getattr(kind, "match", None)
            factors = getattr(kind, "factors", ())
            at = ", ".join(f"{f:g}x" for f in factors) if factors else f"{factor:g}x"
            title = (f"study '{study.study_name}': ranking by {metric} ("
                     f"{_count(len(ranked), 'full-budget trial')}, one seed each" + (
                         f", matched at {at} the baseline's {matched}" if matched
                         else "") + (", each factor ranked on its own" if factors else "")
                     + ")")
        if reused and not args.all:
            title += f"; {_count(reused, 'more proposal')} of a trained network left out (--all)"
        if stopped:
            title += f"; then {_count(len(stopped), 'trial')} stopped early, unranked"
        table = Table(title=title)
        # Empty columns (no latency measured) and a score that is just val_top1 are left out.
        columns = [k for k in keys if (k != "val_top1" or metric != "val_top1")
                   and any(r.get(k) is not None for r in shown)]
        for col in columns:
            table.add_column(metric if col == "score" else col, justify="right")
        if within:
            table.add_column("within noise", justify="right")
        for r in shown:
            marks = [("yes" if within.get(r.trial) else "")] if within else []
            table.add_row(*(_cell(r.get(c), c) for c in columns), *marks,
                          style=None if r.rank == 0 else "dim")
        console().print(table)
        if within and noise is not None:
            sys.stderr.write(
                f"within noise: at most {band:.4f} below the best, the difference two seeds of "
                f"one network exceed 5% of the time (seed std {noise.seed_std:.4f}; "
                f"test-retest Spearman {noise.spearman:.2f} over {noise.networks} "
                f"networks, effsearch reliability)\n")
        ladder = ladder_lib.load(study)
        if ladder:
            console().print(ladder_table(ladder, f"study '{study.study_name}': scale ladder"))
            _print_contrasts(ladder)
        if getattr(kind, "factors", ()):
            _print_forecast(study.study_name, records.trial_rows(study), kind, args.forecast)
        elif not ladder and not pareto and ranked and factor is not None:
            sys.stderr.write(f"note: one seed a trial: differences of a point or two may be "
                             f"noise; `effsearch validate {study.study_name} --factors "
                             f"{2 * factor:g},{4 * factor:g} --seeds 3` confirms the top "
                             f"directions at larger costs with seeds\n")
    if args.plot:
        from search.plots import front_plot, html_table, save_front

        plot = front_plot(ranked, config, f"{study.study_name}: {config['kind']} search, "
                                          f"{len(ranked)} trials")
        path = save_front(plot, args.plot, table_html=html_table(ranked, (*keys, "arch")))
        sys.stderr.write(f"wrote {path}\n")


def _default_forecast(rows: list[records.TrialRow]) -> float | None:
    largest = factor_rungs.largest_reached(rows)
    return None if largest is None else 2 * largest


def _print_forecast(name: str, rows: list[records.TrialRow], kind: Any,
                    factor: float | None) -> None:
    """The forecast of the best directions at `factor` (default: twice the largest trained)
    from a study's factor rungs, or one line saying why there is none."""
    from search.forecast import MIN_FRACTION, study_forecast

    factor = factor or _default_forecast(rows)
    if factor is None:
        return
    result = study_forecast(rows, kind, factor)
    if isinstance(result, str):
        sys.stderr.write(f"no forecast at {factor:g}x: {result}\n")
        return
    fitted = ", ".join(f"{f:g}x: {n}" for f, n in result.fitted_on.items())
    if result.left_out:
        fitted += (f" ({result.left_out} stopped before {MIN_FRACTION:.0%} of the budget "
                   f"left out)")
    caption = "a forecast, not a measurement: train the best at that factor before relying on it"
    if result.vague:
        caption = (f"the intervals are wider than the fitted trainings' whole range "
                   f"({result.spread:.4f}): these trainings do not pin the fit, so its order is "
                   f"a shortlist to train at that factor, not a ranking")
    table = Table(title=f"study '{name}': forecast at {factor:g}x ({result.model} fit, "
                        f"{result.parameters} parameters, on {fitted} trainings; 95% "
                        f"bootstrap interval, {result.resamples} resamples)", caption=caption)
    for col in ("depth", "width", "resolution", "predicted", "95% interval", "P(best)"):
        table.add_column(col, justify="right")
    for row in result.summary(top=5)["directions"]:
        table.add_row(*(f"{v:.2f}" for v in row["shares"]), f"{row['predicted']:.4f}",
                      f"{row['low']:.4f} - {row['high']:.4f}", f"{row['p_best']:.0%}")
    console().print(table)


def _count(n: int, noun: str) -> str:
    """"1 trial", "2 trials"."""
    return f"{n} {noun}{'s' * (n != 1)}"


def _cell(value: Any, column: str) -> str:
    if value is None:
        return ""
    if column in ("macs", "params"):
        return f"{value / 1e6:.3f}M"
    if column == "factor":
        return f"{value:g}x"
    return records.fmt(value)


# ----------------------------------------------------------------------------- export


# Formats `export` refuses, and why: neither library computes effsearch's (TF's) network.
REFUSED_FORMATS = {
    "torchvision": "torchvision's EfficientNet pads symmetrically (PyTorch style) where "
                   "effsearch's networks pad TF-SAME, and rounds channels to 8: use --format "
                   "timm, which builds them exactly",
    "keras": "Keras applications' EfficientNet refuses inputs under 32 px and rounds "
             "filters to 8: use --format keras-hub, which builds effsearch's networks exactly",
}


def cmd_export(args: argparse.Namespace) -> None:
    from search import ladder as ladder_lib

    if args.format in REFUSED_FORMATS:
        raise UserError(f"--format {args.format}: {REFUSED_FORMATS[args.format]}")
    if args.format == "json" and args.output is None:
        raise UserError("export needs -o FILE.json (or --format timm|keras-hub to print code)")
    if args.family and args.output is None:
        raise UserError("--family writes a family file: give it -o FILE.json")
    if args.phi is not None and args.format == "json":
        raise UserError("--phi picks the member a --format snippet builds; the .json file "
                        "holds the whole family (--family PHIS lists members)")
    study, url = _open(args)
    config = records.study_config(study)
    objective = config["objective"]
    ladder = ladder_lib.load(study)
    how, why = args.pick, args.pick
    if how is None:
        if ladder:
            best = ladder_lib.best_candidate(ladder)
            how = str(best["trial"])
            why = (f"best mean {ladder['metric']} at {max(ladder['factors']):g}x on the ladder: "
                   f"{best[ladder['metric'] + '_mean']:.4f} +- "
                   f"{best[ladder['metric'] + '_std']:.4f}, {len(ladder['seeds'])} seeds")
        elif (largest := factor_rungs.largest_reached(rows := records.trial_rows(study))):
            top = max((r for r in rows if r.factor == largest and r.state == "complete"
                       and r.full_budget), key=lambda r: (r.score, -r.trial))
            how = str(top.trial)
            why = (f"best {top.metric} at {largest:g}x, the largest factor reached (one seed, "
                   f"not confirmed: `effsearch search` confirms it when ladder_seeds > 1)")
        else:
            how = why = "knee" if objective["kind"] == "pareto" else "best"
    if how == "knee" and objective["kind"] != "pareto":
        raise UserError(f"--pick knee needs a Pareto study; '{study.study_name}' is scored on "
                        f"{objective['metric']} alone (its trials are matched in cost): use "
                        f"--pick best or a trial number")
    if args.family and not isinstance(kinds.from_stored(config), kinds.CoefficientSearch):
        raise UserError(f"--family writes a scaled family; study '{study.study_name}' is a "
                        f"{config['kind']} search, which exports one network")
    if args.phi is not None and not isinstance(kinds.from_stored(config),
                                               kinds.CoefficientSearch):
        raise UserError(f"--phi picks a member of a scaled family; study "
                        f"'{study.study_name}' is a {config['kind']} search, which found one "
                        f"network")
    row = records.pick(records.trial_rows(study), how, records.cost_field(config))
    extra = {"picked_by": why} | ({"ladder": ladder_lib.summary(ladder)} if ladder else {})
    kind = kinds.from_stored(config)
    if getattr(kind, "factors", ()):
        from search.forecast import study_forecast

        rows = records.trial_rows(study)
        twice = _default_forecast(rows)
        result = study_forecast(rows, kind, twice) if twice else "nothing trained"
        extra["forecast"] = ({"factor": twice, "none": result} if isinstance(result, str)
                             else result.summary())
    with contextlib.ExitStack() as stack:
        if args.output is None:  # a snippet alone: the export file only to read back
            import tempfile

            folder = stack.enter_context(tempfile.TemporaryDirectory())
            target = Path(folder) / "export.json"
        else:
            target = Path(args.output)
        path = records.export(study, row, target, storage.public_location(url), extra)
        if args.family:  # the coefficients just written, with every member resolved
            from space import load_coefficients
            from space.family_file import family_record, save_family

            coeffs = load_coefficients(path)
            save_family(family_record(coeffs, args.family), path)
        if args.output is not None:
            # Said before a snippet, which may still be refused; with a snippet on stdout,
            # what was written goes to stderr (stdout stays code).
            out = sys.stdout if args.format == "json" else sys.stderr
            out.write(f"wrote {path}: trial {row.trial} ({why}), "
                      f"{kinds.from_stored(config).describe(row)}, {row.metric} "
                      f"{row.score:.4f}, {row.macs / 1e6:.2f}M MACs\n")
            out.flush()
        if args.format != "json":
            _print_snippet(args, study.study_name, row, path)
    if ladder:
        largest = max(ladder["factors"])
        metric = ladder["metric"]
        at = [r for r in ladder["rows"] if r["factor"] == largest]
        leader = max(at, key=lambda r: r[f"{metric}_mean"])
        if leader["role"] == "reference":
            sys.stderr.write(f"note: at {largest:g}x the reference '{leader['method']}' beats "
                             f"every searched direction ({metric} {leader[metric + '_mean']:.4f}"
                             f" +- {leader[metric + '_std']:.4f}); it is not exported\n")


def _print_snippet(args: argparse.Namespace, study_name: str, row: records.TrialRow,
                   path: Path) -> None:
    """Python that builds the picked network, or --phi's member of its family, in the library
    --format names, without effsearch."""
    import space

    if args.phi is None:
        spec, which = space.decode(row.arch), f"trial {row.trial}'s network"
    else:
        spec = space.scale(None, space.load_coefficients(path), args.phi)
        which = f"phi={args.phi:g} of trial {row.trial}'s family"
    total = space.cost(spec)
    title = (f"effsearch study '{study_name}', {which}: {total.macs / 1e6:.2f}M MACs, "
             f"{total.params / 1e6:.3f}M params, {spec.resolution} px")
    if args.format == "timm":
        from space.timm_export import timm_snippet

        sys.stdout.write(timm_snippet(spec, title))
    else:
        from space.keras_hub_export import keras_hub_snippet

        sys.stdout.write(keras_hub_snippet(spec, title))


# ----------------------------------------------------------------------------- reliability


def cmd_reliability(args: argparse.Namespace) -> None:
    from search.config import load_search_config
    from trainers import runtime

    config = load_search_config(args.config)
    study = None
    if args.store:  # before hours of training: the study must exist and be this setup's
        from search.config import dumps

        url = storage.storage_url(args.workdir, args.storage)
        study = storage.load_study(storage.open_storage(url, create=False), args.store, url)
        stored, mine = records.study_config(study), json.loads(dumps(config))
        differ = [f"proxy.{k}" for k in sorted(mine["proxy"])
                  if k != "seed" and stored["proxy"].get(k) != mine["proxy"][k]]
        if stored["objective"]["metric"] != config.objective.metric:
            differ.append("objective.metric")
        if getattr(kinds.from_stored(stored), "growth", None) != getattr(config.search,
                                                                            "growth", None):
            differ.append("the cost factor")
        if differ:
            raise UserError(f"study '{args.store}' trains another proxy than {args.config} "
                            f"({', '.join(differ)} differ): its noise would not be this one")
    workdir = Path(args.workdir or storage.DEFAULT_WORKDIR)
    results = workdir / "reliability" / f"{config.name}.jsonl"
    runtime.start(args.allow_cpu)

    def trained(done: int, total: int, net: Any, seed: int, score: float) -> None:
        shares = ", ".join(f"{v:.2f}" for v in net.shares)
        err_console().print(f"{done}/{total}: ({shares}) seed {seed}: "
                            f"{config.objective.metric} {score:.4f}", markup=False,
                            highlight=False)

    found = reliability.measure(config, networks=args.networks, seeds=args.seeds,
                                step=args.step, results=results, on_trained=trained)
    if study is not None:
        study.set_user_attr(reliability.ATTR, found.to_json())
    if args.json:
        print_json(found.to_json())
    else:
        interval = (f" (95% {found.interval[0]:.2f} to {found.interval[1]:.2f})"
                    if found.interval else "")
        console().print(
            f"test-retest reliability of '{config.name}' at {found.factor:g}x: Spearman "
            f"{found.spearman:.3f}{interval} over {found.networks} "
            f"networks, seeds {', '.join(map(str, found.seeds))}\n"
            f"seed std of {found.metric}: {found.seed_std:.4f} (networks spread "
            f"{found.spread:.4f}); two single-seed scores closer than "
            f"{found.noise_band:.4f} are within noise; a correlation with another ranking "
            f"this noisy cannot exceed {found.ceiling(found):.2f}", markup=False)
    if found.networks < reliability.ADVISED_NETWORKS:
        sys.stderr.write(f"note: {found.networks} networks: the interval is wide; "
                         f"{reliability.ADVISED_NETWORKS} or more pin the correlation down\n")
    sys.stderr.write(f"trainings kept in {results}" + (
        f"; recorded in study '{args.store}'" if study is not None else "") + "\n")


# ----------------------------------------------------------------------------- validate


def cmd_validate(args: argparse.Namespace) -> None:
    from trainers import runtime

    if args.factors is None:
        if args.no_references or args.reuse:
            raise UserError(f"--{'no-references' if args.no_references else 'reuse'} is an "
                            f"option of the scale ladder: give --factors")
        if args.epochs is None:
            raise UserError("give --factors (the scale ladder) or --epochs (the proxy's rank "
                            "correlation against a longer training)")
        arguments.correlation_top(args.top or 5)
    study, _ = _open(args)
    runtime.start(args.allow_cpu)
    if args.factors is not None:
        record = _ladder(study, factors=args.factors, top=args.top or 3, seeds=args.seeds,
                         epochs=args.epochs, references=not args.no_references,
                         show=not args.json, reuse=_table(args.reuse) if args.reuse else None)
        if args.json:
            from search import ladder as ladder_lib

            print_json(record | {"contrasts": ladder_lib.contrasts(record)})
        return
    from search.validation import validate

    top = args.top or 5
    with Progress(console=err_console(), transient=True) as bar:
        task = bar.add_task(f"retraining top {top}", total=top)

        def progress(done: int, total: int, row: dict[str, Any]) -> None:
            bar.update(task, completed=done, total=total)
            # A line per retraining: the bar alone shows nothing in a log file.
            bar.console.print(f"{done}/{total}: trial {row['trial']} retrained for "
                              f"{args.epochs} epochs: {row['long_status']}, score "
                              f"{records.fmt(row['long_score'])} (proxy "
                              f"{records.fmt(row['proxy_score'])})", markup=False)

        report = validate(study, top=top, epochs=args.epochs, progress=progress)
    if args.json:
        print_json(report)
    else:
        table = Table(title=f"proxy ({report['proxy_epochs']} epochs) vs {report['long_epochs']}"
                            f" epochs: Spearman {_cell(report['spearman'], '')}, Kendall "
                            f"{_cell(report['kendall'], '')}")
        for col in ("trial", "alpha", "beta", "gamma", "macs", "proxy_score", "long_score"):
            table.add_column(col, justify="right")
        for r in report["rows"]:
            table.add_row(*(_cell(r[c], c) for c in ("trial", "alpha", "beta", "gamma", "macs",
                                                    "proxy_score", "long_score")))
        console().print(table)
    if report["warning"]:
        sys.stderr.write(f"warning: {report['warning']}\n")


def _table(path: str) -> Any:
    """A direction table from a file, or one line saying why it cannot be read."""
    from search.replay import Table

    try:
        return Table.load(path)
    except (OSError, ValueError, KeyError) as e:
        raise UserError(f"--reuse {path}: not a readable direction table ({e})") from None


def _ladder(study: Any, *, factors: list[float], top: int, seeds: int,
            epochs: int | None = None, references: bool = True,
            show: bool = True, reuse: Any = None) -> dict[str, Any]:
    """Runs the scale ladder with a line per training; prints its table if `show`."""
    from search.ladder import run_ladder

    count = [0]

    def trained(spec: Any, seed: int, result: Any) -> None:
        count[0] += 1
        err_console().print(f"ladder training {count[0]}: {spec.resolution} px, seed {seed}: "
                            f"{result.status}, val_top1 {result.val_top1:.4f}, test_top1 "
                            f"{result.test_top1:.4f}", markup=False, highlight=False)

    record = run_ladder(study, factors=factors, top=top, seeds=seeds, epochs=epochs,
                        references=references, on_trained=trained, reuse=reuse)
    if show:
        console().print(ladder_table(record, f"study '{study.study_name}': scale ladder"))
        _print_contrasts(record)
    return record


def _print_contrasts(record: dict[str, Any]) -> None:
    """A line per factor and contrast: the exported direction against the paper's and the
    best single dimension, on test top-1, in standard errors of the difference."""
    from search import ladder as ladder_lib

    for c in ladder_lib.contrasts(record):
        z = (f"{c['z']:+.1f} SE, Welch p {c['p']:.2g}" if c["z"] is not None
             else "no standard error: no seed spread, or a failed training")
        console().print(f"{c['factor']:g}x: {c['direction']} against {c['against']} "
                        f"({c['method']}): test top-1 {c['difference']:+.4f} +- {c['se']:.4f} "
                        f"({z})", markup=False, highlight=False)


def ladder_table(record: dict[str, Any], title: str) -> Table:
    """The ladder's rows: each direction at each factor, mean +- std over seeds; a member
    further than the ladder's tolerance from its factor is starred."""
    from search import ladder as ladder_lib

    metric, tolerance = record["metric"], record["tolerance"]
    table = Table(title=f"{title} ({len(record['seeds'])} seeds, {record['epochs']} epochs, "
                        f"matched {record['cost']}; mean +- std)",
                  caption=f"cost ratio: the member's realized {record['cost']} over the "
                          f"baseline's; * more than {tolerance:.0%} from the factor")
    for col in ("factor", "direction", "alpha", "beta", "gamma", "phi", "cost ratio",
                metric, "test_top1"):
        table.add_column(col, justify="right")
    for r in sorted(record["rows"], key=lambda r: (r["factor"], -r[f"{metric}_mean"])):
        error = ladder_lib.match_error(r, record)
        table.add_row(f"{r['factor']:g}x", escape(r["method"]), *(_cell(r.get(k), k) for k in
                                                         ("alpha", "beta", "gamma")),
                      f"{r['parameter']:.3f}" if r["kind"] == "compound" else
                      f"x{r['parameter']:.3f}",
                      f"{r['factor'] * (1 + error):.2f}" + ("*" if abs(error) > tolerance
                                                             else ""),
                      f"{r[metric + '_mean']:.4f} +- {r[metric + '_std']:.4f}",
                      f"{r['test_top1_mean']:.4f} +- {r['test_top1_std']:.4f}",
                      style=None if r["role"] == "candidate" else "dim")
    return table


# ----------------------------------------------------------------------------- storage proxy


def cmd_storage_proxy(args: argparse.Namespace) -> None:
    """`effsearch storage-proxy`: Optuna's gRPC proxy in front of an RDB storage."""
    import os

    from search.paths import STORAGE_ENV
    from search.storage import proxy

    url = args.storage or os.environ.get(STORAGE_ENV)
    if not url:
        raise UserError(f"storage-proxy needs the storage it holds: --storage URL or "
                        f"${STORAGE_ENV}")
    if url.startswith(proxy.SCHEME):
        raise UserError("storage-proxy holds a database, not another proxy: give it the "
                        "postgresql:// (or other RDB) URL")
    if "://" not in url or url.startswith("redis://"):
        raise UserError("Optuna's gRPC proxy serves an RDB storage (postgresql://, "
                        "mysql://, sqlite:///), not a journal (optuna#6084); workers on one "
                        "host share a journal file without a proxy")
    if args.port > 65535:
        raise UserError(f"--port must be at most 65535, got {args.port}")
    try:
        import grpc  # noqa: F401
    except ImportError:
        raise UserError("storage-proxy needs grpcio: pip install 'effsearch[grpc]'") from None
    store = storage.open_storage(url)
    sys.stderr.write(f"storage proxy for {storage.redact(url)} on "
                     f"grpc://{args.host}:{args.port} (insecure channel: keep it on a private "
                     f"network); Ctrl-C stops it\n")
    try:
        proxy.serve(store, args.host, args.port, serial=storage.is_sqlite(url))
    except KeyboardInterrupt:
        sys.stderr.write("storage proxy stopped\n")
    except RuntimeError as e:  # gRPC cannot bind the port
        raise UserError(f"cannot serve on {args.host}:{args.port}: {e}") from None
