"""How much training each search method needs: replays against the recorded direction table.

    python benchmarks/search_efficiency.py --seeds 30 [--trials 20] [--snap 0.1] [--json]
    python benchmarks/search_efficiency.py --methods gp --seeds 30   # GP: an hour, not minutes
    python benchmarks/search_efficiency.py --table T.jsonl --methods tpe,random --seeds 5
    python benchmarks/search_efficiency.py --table T.jsonl --target-factor 8 --seeds 30 --json

Every method runs the real effsearch search (`search.replay`: the same samplers, references,
design, halving and worker loop) against a direction table (default experiments/results/
mnist5k/direction_table.jsonl; experiments/results/cifar10/ has CIFAR-10's) at its lowest
factor, once per seed: the search the table stands in for, with the baseline, proxy, rounding
and tolerance its header records (search.replay.table_header). Methods: the paper's grid at
steps 0.05 and 0.1 (NNI's), random directions, TPE, GP and NSGA-II (population sized to the
budget), each with and without asynchronous halving (SearchConfig's default if it has one,
else one rung at a third of the proxy's epochs, eta 3; --halving), with 1 and 4 simulated
workers (--workers). Per method:
the normalized regret of the recommended direction ((best - its mean) / (best - worst), table
means over training seeds) at the end, mean +- standard error over seeds; the full-budget
trainings and recorded seconds spent until the recommendation is within one standard error of
the table's best; the mean rank among methods at 25% and 100% of the 0.05 grid's training
(what it spends: its points that round to a network already trained reuse that result, so it
trains far fewer networks than its 232 points); the regret of the recommendation at the
table's other factors (does a direction found at 2x carry to 4x?). Promotions continue from
their rung's checkpoint, as the real search does since session 12: `retrained_mean` is what
that saves against retraining them from the first epoch (part of `trainings_mean` in tables
recorded before).
`--pareto` searches two objectives (val top-1, params; MACs are matched) and adds the
hypervolume gap of the full-budget trials to the table's own front.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from search.config import CoefficientSearch, Objective, SearchConfig  # noqa: E402
from search.halving import Halving  # noqa: E402
from search.manifold import Simplex  # noqa: E402
from search.replay import ReplayOutcome, Table, replay_many, replay_tolerance  # noqa: E402
from trainers.config import ProxyConfig  # noqa: E402

TABLE = ROOT / "experiments" / "results" / "mnist5k" / "direction_table.jsonl"
SAMPLERS = ("grid0.05", "grid0.1", "random", "tpe", "gp", "nsga2")
DEFAULTS = {f.name: f.default for cls in (SearchConfig, CoefficientSearch)
            for f in dataclasses.fields(cls) if f.name in ("sampler", "trials", "halving",
                                                           "startup_trials", "snap")}


def default_halving(table: Table) -> Halving:
    """The halving replayed: SearchConfig's default if it has one, else one rung at a third
    of the table's proxy epochs (3 of MNIST's 9), eta 3."""
    epochs = table.header["proxy"]["epochs"]
    return DEFAULTS["halving"] or Halving(min_epochs=max(1, epochs // 3), eta=3)


def table_search(table: Table, trials: int) -> SearchConfig:
    """The direction search the table stands in for, from its header: its baseline, proxy,
    rounding and cost tolerance at its lowest factor, otherwise SearchConfig's and
    CoefficientSearch's defaults (TPE after the references and the startup design)."""
    header = table.header
    missing = [k for k in ("proxy", "baseline", "rounding", "tolerance") if k not in header]
    if missing:
        sys.exit(f"the table's header lacks {', '.join(missing)}: export it again with "
                 f"experiments/export_direction_table.py")
    rounding = header["rounding"]
    return SearchConfig(
        name="replay",
        search=CoefficientSearch(baseline=header["baseline"], phi=math.log2(table.factors()[0]),
                                 resolution_multiple=rounding["resolution_multiple"],
                                 channel_divisor=rounding["channel_divisor"],
                                 match=rounding["match"], tolerance=header["tolerance"]),
        proxy=ProxyConfig.from_json(header["proxy"]), trials=trials, ladder=())


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    sampler: str
    grid_step: float | None
    halving: Halving | None
    workers: int
    pareto: bool = False

    def config(self, base: SearchConfig, snap: float = DEFAULTS["snap"]):
        """`base` (`table_search`) with this method's sampler, halving, workers and `snap`."""
        trials = base.trials
        search = dataclasses.replace(base.search, snap=snap)
        if self.grid_step is not None:
            search = dataclasses.replace(search, grid_step=self.grid_step)
        return dataclasses.replace(
            base, name=f"replay-{self.name}", search=search, sampler=self.sampler,
            trials=None if self.grid_step is not None else trials,
            startup_trials=0 if self.grid_step is not None else DEFAULTS["startup_trials"],
            halving=self.halving,
            objective=Objective(kind="pareto", cost="params") if self.pareto else None)


def methods(names: list[str], halving: Halving, pareto: bool = False,
            workers: tuple[int, ...] = (1, 4)) -> list[Method]:
    """Each sampler without and with `halving`, with each number of `workers`."""
    out = []
    for name in names:
        sampler, step = (("grid", float(name[4:])) if name.startswith("grid")
                         else (name, None))
        if sampler == "gp" and importlib.util.find_spec("torch") is None:
            print("gp skipped: Optuna's GPSampler needs torch", file=sys.stderr)
            continue
        for rungs in (None, halving):
            for n in workers:
                label = f"{name}{'+halving' if rungs else ''}/{n}w"
                out.append(Method(label, sampler, step, rungs, n, pareto))
    return out


def _at(outcome: ReplayOutcome, spent: float, axis: int = 0) -> float:
    """The incumbent's regret once `spent` was spent: full-budget trainings (axis 0 of the
    trace) or recorded seconds (axis 1)."""
    regret = 1.0
    for point in outcome.trace:
        if point[axis] > spent:
            break
        if point[2] is not None:
            regret = point[2]
    return regret


def _se(values: np.ndarray) -> float:
    """Standard error of the mean over seeds (0 for one seed)."""
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def best_se(table: Table, factor: float, tolerance: float | None) -> float:
    """One standard error of the best admissible direction's mean (see `_to_best`)."""
    directions = table.directions(factor, tolerance)
    noise = float(np.median([d.std for d in directions if len(d.rows) > 1]))
    return noise / np.sqrt(len(table.best(factor, tolerance).rows))


def _to_best(outcome: ReplayOutcome, table: Table, factor: float,
             tolerance: float | None) -> tuple[float, float] | None:
    """(trainings, seconds) spent when the incumbent first came within one standard error of
    the best admissible direction's mean; None if it never did. The standard error is the
    table's seed noise (median seed std over the directions) over the best's seed count:
    the best's own std, from 2-3 seeds, is too noisy an estimate (0.0014 at 2x against a
    median of 0.0072)."""
    best = table.best(factor, tolerance)
    threshold = best.mean - best_se(table, factor, tolerance)
    spread = best.mean - min(d.mean for d in table.directions(factor, tolerance))
    for spent, seconds, regret in outcome.trace:
        if regret is not None and best.mean - regret * spread >= threshold - 1e-12:
            return spent, seconds
    return None


def run(table: Table, names: list[str], seeds: int, trials: int, pareto: bool = False,
        plot: Path | None = None, jobs: int = 1, snap: float = DEFAULTS["snap"],
        halving: Halving | None = None, workers: tuple[int, ...] = (1, 4)) -> list[dict]:
    import optuna

    from trainers.proxy import load_proxy_dataset

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    base = table_search(table, trials)
    dataset = load_proxy_dataset(base.proxy)
    grid = len(Simplex().grid(0.05)) + 1  # the lattice and the paper's direction
    results: dict[str, list[ReplayOutcome]] = {}
    chosen = methods(names, halving or default_halving(table), pareto, workers)
    configs = {method.name: method.config(base, snap) for method in chosen}
    todo = [(configs[m.name], s, m.workers) for m in chosen for s in range(seeds)]
    outcomes = replay_many(todo, table, processes=jobs, dataset=dataset)
    start = time.monotonic()
    for method in chosen:
        results[method.name] = [next(outcomes) for _ in range(seeds)]
        print(f"{method.name}: done ({time.monotonic() - start:.0f} s)", file=sys.stderr,
              flush=True)
    # What the 0.05 grid trains here: its points that round to a network already trained
    # reuse that result, so it spends far fewer trainings than its size (the paper's grid).
    # Replayed once when it is not among the methods, so that runs of a few methods share
    # the budget axis (25% and 100% of the grid's training) of the full run.
    if "grid0.05/1w" in results:
        grid_spent = float(np.mean([o.trainings for o in results["grid0.05/1w"]]))
    else:
        reference = Method("grid0.05/1w", "grid", 0.05, None, 1).config(base, snap)
        grid_spent = float(next(replay_many([(reference, 0, 1)], table,
                                            dataset=dataset)).trainings)
    if plot:
        _plot(results, grid_spent, plot)
    ranks = {}
    for fraction in (0.25, 1.0):
        per_seed = np.array([[_at(results[m.name][s], fraction * grid_spent) for m in chosen]
                             for s in range(seeds)])
        ranks[fraction] = stats.rankdata(per_seed, axis=1).mean(0)  # ties share a rank
    rows = []
    for i, method in enumerate(chosen):
        outs = results[method.name]
        regrets = np.array([o.regret for o in outs])
        factor = configs[method.name].search.growth
        tolerance = replay_tolerance(configs[method.name])
        reached = [_to_best(o, table, factor, tolerance) for o in outs]
        spent = np.array([r[0] if r else o.trainings for r, o in zip(reached, outs,
                                                                     strict=True)])
        seconds = np.array([r[1] if r else o.seconds for r, o in zip(reached, outs,
                                                                     strict=True)])
        rows.append({
            "method": method.name, "seeds": seeds, "grid_trainings": grid,
            "grid_trainings_spent": grid_spent,
            "best_se": best_se(table, factor, tolerance),
            "trials": None if method.grid_step else trials,
            "trainings_mean": float(np.mean([o.trainings for o in outs])),
            # What continuing promotions from checkpoints saved (epochs their originals had
            # trained), in full-budget trainings.
            "retrained_mean": float(np.mean([o.retrained for o in outs])),
            "trainings_to_best_mean": float(spent.mean()),
            "seconds_to_best_mean": float(seconds.mean()),
            "reached_best_fraction": float(np.mean([r is not None for r in reached])),
            "final_regret_mean": float(regrets.mean()),
            "final_regret_se": _se(regrets),
            "mean_rank_at_25pct_grid": float(ranks[0.25][i]),
            "mean_rank_at_100pct_grid": float(ranks[1.0][i]),
            **(_hv(outs, table, factor, tolerance) if pareto else {}),
            **_carried(outs, table, factor, tolerance),
            "snap": snap,
            # The sampler, halving and snap SearchConfig and CoefficientSearch default to (at
            # the --trials asked for), one worker.
            "default": (method.sampler == DEFAULTS["sampler"] and method.workers == 1
                        and method.halving == DEFAULTS["halving"]
                        and snap == DEFAULTS["snap"])})
    return rows


def _plot(results: dict[str, list[ReplayOutcome]], grid: float, path: Path) -> None:
    """Mean normalized regret of the incumbent against full-budget trainings and recorded
    hours spent, one-worker methods (+- one standard error shaded): a color per sampler,
    dashed with halving (four workers spend about the same; the JSON has them)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = {name: outs for name, outs in results.items() if name.endswith("/1w")}

    def sampler(name: str) -> str:  # "tpe+halving/1w" -> "tpe"
        return name.split("+")[0].split("/")[0]

    colors = dict(zip(dict.fromkeys(map(sampler, shown)), plt.get_cmap("tab10").colors,
                      strict=False))
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    most_s = max(o.seconds for outs in shown.values() for o in outs)
    most = max(o.trainings for outs in shown.values() for o in outs)
    for name, outs in shown.items():
        style = {"color": colors[sampler(name)],
                 "ls": "--" if "+halving" in name else "-", "lw": 1.4}
        for axis, xs, spent in ((left, np.linspace(0, most, 200), 0),
                                (right, np.linspace(0, most_s, 200), 1)):
            curves = np.array([[_at(o, x, spent) for x in xs] for o in outs])
            mean = curves.mean(0)
            se = curves.std(0, ddof=1) / np.sqrt(len(outs)) if len(outs) > 1 else 0 * mean
            scale = 1.0 if axis is left else 1 / 3600
            axis.plot(xs * scale, mean, label=name.removesuffix("/1w"), **style)
            axis.fill_between(xs * scale, mean - se, mean + se, color=style["color"],
                              alpha=0.12)
    if grid / 3 <= most:
        left.axvline(grid / 3, color="grey", ls=":", lw=1)
    left.set_xlabel("full-budget trainings spent (dotted: a third of the 0.05 grid's)")
    right.set_xlabel("recorded training hours spent")
    left.set_ylabel("normalized regret of the recommendation")
    left.set_ylim(0, 1.02)
    right.legend(fontsize=8, ncol=2, title="one worker; dashed: halving", title_fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _carried(outs: list[ReplayOutcome], table: Table, factor: float,
             tolerance: float | None) -> dict:
    """The regret of each recommendation at the table's other factors (its nearest direction
    there, among those within the tolerance): does what a search finds at 2x carry to 4x?"""
    out = {}
    for other in table.factors():
        if math.isclose(other, factor):
            continue
        regrets = np.array([table.regret(o.recommended, other, tolerance)
                            if o.recommended else 1.0 for o in outs])
        out[f"final_regret_{other:g}x_mean"] = float(regrets.mean())
        out[f"final_regret_{other:g}x_se"] = _se(regrets)
    return out


def _hv(outs: list[ReplayOutcome], table: Table, factor: float,
        tolerance: float | None) -> dict:
    """Hypervolume gap of the full-budget trials (val top-1 up, params down) to the table's."""
    gaps = np.array([table.hypervolume_gap(o.full, factor, tolerance=tolerance)
                     for o in outs])
    return {"hypervolume_gap_mean": float(gaps.mean()), "hypervolume_gap_se": _se(gaps)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--table", type=Path, default=TABLE)
    parser.add_argument("--seeds", type=int, default=30)
    parser.add_argument("--trials", type=int, default=DEFAULTS["trials"],
                        help="distinct trainings of the non-grid methods (default: "
                             "SearchConfig's, %(default)s)")
    parser.add_argument("--halving", metavar="MIN_EPOCHS,ETA",
                        help="the halving replayed (default: SearchConfig's, else a third "
                             "of the table's proxy epochs, eta 3)")
    parser.add_argument("--workers", default="1,4",
                        help="simulated workers of each method, comma-separated (default 1,4)")
    parser.add_argument("--snap", type=float, default=DEFAULTS["snap"],
                        help="CoefficientSearch.snap of every method (default %(default)s)")
    # GP is opt-in: Optuna refits its GP at every proposal, ~80 s a replay on 2 cores against
    # seconds for the others, so it would turn a minutes-long run into an hour.
    parser.add_argument("--methods", default=",".join(s for s in SAMPLERS if s != "gp"),
                        help=f"comma-separated, of {', '.join(SAMPLERS)} (default %(default)s)")
    parser.add_argument("--pareto", action="store_true",
                        help="two objectives (val top-1, params): adds the hypervolume gap")
    parser.add_argument("--plot", type=Path, help="regret curves to this image file")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="replays run in this many processes (default: one per core)")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--target-factor", type=float, metavar="F",
                        help="compare the six ways to a direction for factor F instead "
                             "(benchmarks/factor_efficiency.py): the table needs rows at F")
    parser.add_argument("--factor-eta", type=int, metavar="N",
                        help="with --target-factor: the factor rungs' factor_eta (default: "
                             "CoefficientSearch's)")
    args = parser.parse_args()
    if not args.table.exists():
        sys.exit(f"no table at {args.table}: build it with "
                 f"experiments/build_direction_table.sh, then "
                 f"python experiments/export_direction_table.py")
    if args.target_factor is not None:
        import factor_efficiency

        from space import UserError

        table = Table.load(args.table)
        try:
            rows = factor_efficiency.run(table, table_search(table, args.trials),
                                         args.target_factor, args.seeds, args.jobs,
                                         args.factor_eta)
        except UserError as e:  # e.g. --factor-eta 1
            sys.exit(f"error: {e}")
        print(json.dumps(rows, indent=1) if args.json else factor_efficiency.markdown(rows))
        return
    rows = run(Table.load(args.table), args.methods.split(","), args.seeds, args.trials,
               args.pareto, args.plot, args.jobs, args.snap,
               _halving(args.halving) if args.halving else None,
               tuple(int(n) for n in args.workers.split(",")))
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(markdown(rows))


def markdown(rows: list[dict]) -> str:
    """The rows as the table of experiments/README.md part D."""
    carried = sorted(k[len("final_regret_"):-len("_mean")] for k in rows[0]
                     if k.startswith("final_regret_") and k.endswith("x_mean"))
    lines = ["| method | trainings | to best (trainings) | reached | final regret | "
             + "".join(f"regret at {c} | " for c in carried) + "rank@25% | rank@100% |",
             "|---" * (7 + len(carried)) + "|"]
    for r in rows:
        lines.append(
            f"| {r['method']}{' (default)' if r['default'] else ''} | "
            f"{r['trainings_mean']:.1f} | {r['trainings_to_best_mean']:.1f} | "
            f"{r['reached_best_fraction']:.0%} | {r['final_regret_mean']:.3f} +- "
            f"{r['final_regret_se']:.3f} | "
            + "".join(f"{r[f'final_regret_{c}_mean']:.3f} +- {r[f'final_regret_{c}_se']:.3f} | "
                      for c in carried)
            + f"{r['mean_rank_at_25pct_grid']:.1f} | {r['mean_rank_at_100pct_grid']:.1f} |")
    return "\n".join(lines)


def _halving(text: str) -> Halving:
    try:
        min_epochs, eta = (int(v) for v in text.split(","))
    except ValueError:
        sys.exit(f"--halving takes MIN_EPOCHS,ETA (e.g. 3,3), got {text!r}")
    return Halving(min_epochs=min_epochs, eta=eta)


if __name__ == "__main__":
    main()
