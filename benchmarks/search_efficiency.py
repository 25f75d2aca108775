"""How much training each search method needs: replays against the recorded direction table.

    python benchmarks/search_efficiency.py --seeds 30 [--trials 20] [--snap 0.1] [--json]
    python benchmarks/search_efficiency.py --table T.jsonl --methods tpe,random --seeds 5

Every method runs the real effsearch search (`search.replay`: the same samplers, references,
design, halving and worker loop) against experiments/results/mnist5k/direction_table.jsonl at
its 2x factor, once per seed. Methods: the paper's grid at steps 0.05 and 0.1 (NNI's), random
directions, TPE, GP and NSGA-II (population sized to the budget), each with and without
asynchronous halving (3 -> 9 epochs, eta 3), with 1 and 4 simulated workers. Per method:
the normalized regret of the recommended direction ((best - its mean) / (best - worst), table
means over training seeds) at the end, mean +- standard error over seeds; the full-budget
trainings and recorded seconds spent until the recommendation is within one standard error of
the table's best; and the mean rank among methods at 25% and 100% of the 0.05 grid's training.
`--pareto` searches two objectives (val top-1, params; MACs are matched) and adds the
hypervolume gap of the full-budget trials to the table's own front.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from scipy import stats

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "experiments"))

from common import MNIST, direction_search  # noqa: E402

from search.config import CoefficientSearch, Objective, SearchConfig  # noqa: E402
from search.halving import Halving  # noqa: E402
from search.manifold import Simplex  # noqa: E402
from search.replay import ReplayOutcome, Table, replay_many, replay_tolerance  # noqa: E402

TABLE = ROOT / "experiments" / "results" / "mnist5k" / "direction_table.jsonl"
HALVING = Halving(min_epochs=3, eta=3)
SAMPLERS = ("grid0.05", "grid0.1", "random", "tpe", "gp", "nsga2")
DEFAULTS = {f.name: f.default for cls in (SearchConfig, CoefficientSearch)
            for f in dataclasses.fields(cls) if f.name in ("sampler", "trials", "halving",
                                                           "startup_trials", "snap")}


@dataclasses.dataclass(frozen=True)
class Method:
    name: str
    sampler: str
    grid_step: float | None
    halving: bool
    workers: int
    pareto: bool = False

    def config(self, trials: int, snap: float = DEFAULTS["snap"]):
        """The MNIST direction search (experiments/common.py) with this method's sampler,
        halving and workers, and otherwise `SearchConfig`'s and `CoefficientSearch`'s
        defaults (startup trials, tolerance, snap)."""
        base = direction_search(f"replay-{self.name}", MNIST, trials=trials, ladder=())
        search = dataclasses.replace(base.search, snap=snap)
        if self.grid_step is not None:
            search = dataclasses.replace(search, grid_step=self.grid_step)
        return dataclasses.replace(
            base, search=search, sampler=self.sampler,
            trials=None if self.grid_step is not None else trials,
            startup_trials=0 if self.grid_step is not None else DEFAULTS["startup_trials"],
            halving=HALVING if self.halving else None,
            objective=Objective(kind="pareto", cost="params") if self.pareto else None)


def methods(names: list[str], pareto: bool = False) -> list[Method]:
    out = []
    for name in names:
        sampler, step = (("grid", float(name[4:])) if name.startswith("grid")
                         else (name, None))
        if sampler == "gp" and importlib.util.find_spec("torch") is None:
            print("gp skipped: Optuna's GPSampler needs torch", file=sys.stderr)
            continue
        for halving in (False, True):
            for workers in (1, 4):
                label = f"{name}{'+halving' if halving else ''}/{workers}w"
                out.append(Method(label, sampler, step, halving, workers, pareto))
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


def _to_best(outcome: ReplayOutcome, table: Table, factor: float,
             tolerance: float | None) -> tuple[float, float] | None:
    """(trainings, seconds) spent when the incumbent first came within one standard error of
    the best admissible direction's mean; None if it never did."""
    best = table.best(factor, tolerance)
    threshold = best.mean - best.std / np.sqrt(len(best.rows))
    spread = best.mean - min(d.mean for d in table.directions(factor, tolerance))
    for spent, seconds, regret in outcome.trace:
        if regret is not None and best.mean - regret * spread >= threshold - 1e-12:
            return spent, seconds
    return None


def run(table: Table, names: list[str], seeds: int, trials: int, pareto: bool = False,
        plot: Path | None = None, jobs: int = 1, snap: float = DEFAULTS["snap"]) -> list[dict]:
    import optuna

    from trainers.data import load_dataset

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dataset = load_dataset(MNIST.proxy.dataset)
    grid = len(Simplex().grid(0.05)) + 1  # the lattice and the paper's direction
    results: dict[str, list[ReplayOutcome]] = {}
    chosen = methods(names, pareto)
    configs = {method.name: method.config(trials, snap) for method in chosen}
    todo = [(configs[m.name], s, m.workers) for m in chosen for s in range(seeds)]
    outcomes = replay_many(todo, table, processes=jobs, dataset=dataset)
    start = time.monotonic()
    for method in chosen:
        results[method.name] = [next(outcomes) for _ in range(seeds)]
        print(f"{method.name}: done ({time.monotonic() - start:.0f} s)", file=sys.stderr,
              flush=True)
    if plot:
        _plot(results, grid, plot)
    ranks = {}
    for fraction in (0.25, 1.0):
        per_seed = np.array([[_at(results[m.name][s], fraction * grid) for m in chosen]
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
            "trials": None if method.grid_step else trials,
            "trainings_mean": float(np.mean([o.trainings for o in outs])),
            "trainings_to_best_mean": float(spent.mean()),
            "seconds_to_best_mean": float(seconds.mean()),
            "reached_best_fraction": float(np.mean([r is not None for r in reached])),
            "final_regret_mean": float(regrets.mean()),
            "final_regret_se": _se(regrets),
            "mean_rank_at_25pct_grid": float(ranks[0.25][i]),
            "mean_rank_at_100pct_grid": float(ranks[1.0][i]),
            **(_hv(outs, table, factor, tolerance) if pareto else {}),
            "snap": snap,
            # The sampler, halving and snap SearchConfig and CoefficientSearch default to (at
            # the --trials asked for), one worker.
            "default": (method.sampler == DEFAULTS["sampler"] and method.workers == 1
                        and (HALVING if method.halving else None) == DEFAULTS["halving"]
                        and snap == DEFAULTS["snap"])})
    return rows


def _plot(results: dict[str, list[ReplayOutcome]], grid: int, path: Path) -> None:
    """Mean normalized regret of the incumbent against full-budget trainings and recorded
    hours spent, one line per method (+- one standard error shaded)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    most_s = max(o.seconds for outs in results.values() for o in outs)
    most = max(o.trainings for outs in results.values() for o in outs)
    for name, outs in results.items():
        for axis, xs, spent in ((left, np.linspace(0, most, 120), 0),
                                (right, np.linspace(0, most_s, 120), 1)):
            curves = np.array([[_at(o, x, spent) for x in xs] for o in outs])
            mean = curves.mean(0)
            se = curves.std(0, ddof=1) / np.sqrt(len(outs)) if len(outs) > 1 else 0 * mean
            scale = 1.0 if axis is left else 1 / 3600
            line, = axis.plot(xs * scale, mean, label=name, lw=1.2)
            axis.fill_between(xs * scale, mean - se, mean + se, color=line.get_color(),
                              alpha=0.15)
    if grid / 3 <= most:
        left.axvline(grid / 3, color="grey", ls=":", lw=1)
    left.set_xlabel("full-budget trainings spent (dotted: a third of the 0.05 grid)")
    right.set_xlabel("recorded training hours spent")
    left.set_ylabel("normalized regret of the recommendation")
    right.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


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
    parser.add_argument("--snap", type=float, default=DEFAULTS["snap"],
                        help="CoefficientSearch.snap of every method (default %(default)s)")
    parser.add_argument("--methods", default=",".join(SAMPLERS))
    parser.add_argument("--pareto", action="store_true",
                        help="two objectives (val top-1, params): adds the hypervolume gap")
    parser.add_argument("--plot", type=Path, help="regret curves to this image file")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1,
                        help="replays run in this many processes (default: one per core)")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    if not args.table.exists():
        sys.exit(f"no table at {args.table}: build it with "
                 f"experiments/build_direction_table.sh, then "
                 f"python experiments/export_direction_table.py")
    rows = run(Table.load(args.table), args.methods.split(","), args.seeds, args.trials,
               args.pareto, args.plot, args.jobs, args.snap)
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print("| method | trainings | to best (trainings) | reached | final regret | rank@25% | "
          "rank@100% |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['method']}{' (default)' if r['default'] else ''} | "
              f"{r['trainings_mean']:.1f} | {r['trainings_to_best_mean']:.1f} | "
              f"{r['reached_best_fraction']:.0%} | {r['final_regret_mean']:.3f} +- "
              f"{r['final_regret_se']:.3f} | {r['mean_rank_at_25pct_grid']:.1f} | "
              f"{r['mean_rank_at_100pct_grid']:.1f} |")


if __name__ == "__main__":
    main()
