r"""Exports the direction table's studies to JSON lines and says what the table shows.

    python experiments/export_direction_table.py [--dataset mnist5k|cifar10] [--journal J]
        [-o TABLE.jsonl]

Reads every part of the dataset's table (experiments/direction_table.py for MNIST 5k,
experiments/cifar10_direction_table.py for CIFAR-10) found in the journal (a part still being
built contributes the trainings it has), writes experiments/results/<dataset>/
direction_table.jsonl (format: search/replay.py; the header carries what retrains any row:
the whole proxy, the baseline, the rounding and the search's tolerance) and its picture on
the share simplex (direction_table.png, search/table_plot.py), and prints per cost
factor: the best direction, the paper's and each single dimension's distance from it, the
seed noise, how the ranking carries across factors (Spearman and Kendall over the
directions recorded at both), and, for each factor with two below it, how well each forecast
model (search/forecast.py) fitted on the lower factors' trainings predicts it: the
measurement that chooses the model (issue 26), judged by extrapolation against the ranking
the factor just below already gives and against the noise ceiling.
"""

from __future__ import annotations

import argparse
import itertools
import sys
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from scipy import stats

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import CIFAR10, MNIST, Setup, direction_table  # noqa: E402

from search import forecast  # noqa: E402
from search.replay import Table, rows_of_study, table_header  # noqa: E402
from search.storage import open_storage  # noqa: E402
from search.table_plot import direction_table_figure  # noqa: E402

SETUPS = {"mnist5k": MNIST, "cifar10": CIFAR10}
TOLERANCE = 0.05  # CoefficientSearch's default
NAMED = {"paper": (0.280, 0.292, 0.428), "depth-only": (1.0, 0.0, 0.0),
         "width-only": (0.0, 1.0, 0.0), "resolution-only": (0.0, 0.0, 1.0)}


def export(journal: Path, output: Path, setup: Setup = MNIST) -> Table:
    storage = open_storage(str(journal), create=False)
    names = {s.study_name for s in optuna.get_all_study_summaries(storage)}
    rows = []
    for part, (_, _, seed) in setup.table.items():
        config = direction_table(part, setup)
        if config.name not in names:
            continue
        study = optuna.load_study(study_name=config.name, storage=storage)
        rows += rows_of_study(study.get_trials(deepcopy=False), factor=config.search.growth,
                              part=part, seed=seed, epochs=config.proxy.epochs)
    table = Table(tuple(rows))
    table.save(output, **table_header(direction_table(next(iter(setup.table)), setup),
                                      TOLERANCE))
    return table


def report(table: Table) -> None:
    reliability = {factor: table.reliability(factor) for factor in table.factors()}
    for factor in table.factors():
        directions = table.directions(factor)
        best = table.best(factor)
        noise = np.median([d.std for d in directions if len(d.rows) > 1] or [0.0])
        print(f"\n{factor:g}x: {len(directions)} directions, {len(table.rows)} rows in all; "
              f"median seed std {noise:.4f}")
        print(f"  best {_fmt(best.shares)}: val {best.mean:.4f} +- {best.std:.4f} "
              f"(n={len(best.rows)}), test {best.test_mean:.4f}")
        within = table.directions(factor, TOLERANCE)
        if within:
            admissible = table.best(factor, TOLERANCE)
            print(f"  {len(within)} directions within {TOLERANCE:.0%} of {factor:g}x (what a "
                  f"search with the default tolerance may train); best of them "
                  f"{_fmt(admissible.shares)}: val {admissible.mean:.4f} +- "
                  f"{admissible.std:.4f}")
        r = reliability[factor]
        if r is not None:
            lo, hi = r.interval or (float("nan"), float("nan"))
            print(f"  test-retest over {r.networks} distinct networks, seeds {list(r.seeds)}: "
                  f"Spearman {r.spearman:.3f} ({lo:.2f} to {hi:.2f}), seed std "
                  f"{r.seed_std:.4f}, spread {r.spread:.4f}; a {len(r.seeds)}-seed mean's "
                  f"reliability {r.of_mean(len(r.seeds)):.3f}")
        if r is not None:
            print("  chance of being best under seed noise: " + ", ".join(
                f"{_fmt(shares)} {p:.0%}" for shares, p in best_chances(table, factor,
                                                                      r.seed_std)[:4]))
        for name, shares in NAMED.items():
            d = table.nearest(shares, factor)
            print(f"  {name:>15} {_fmt(d.shares)}: val {d.mean:.4f} +- {d.std:.4f}, "
                  f"{best.mean - d.mean:+.4f} below the best, normalized regret "
                  f"{table.regret(shares, factor):.3f}")
    for low, high in itertools.combinations(table.factors(), 2):
        at_high = {d.shares: d.mean for d in table.directions(high)}
        pairs = [(d.mean, at_high[d.shares]) for d in table.directions(low)
                 if d.shares in at_high]
        if len(pairs) >= 3:
            a, b = zip(*pairs, strict=True)
            ra, rb = reliability[low], reliability[high]
            seeds = min(len(ra.seeds), len(rb.seeds)) if ra and rb else 0
            ceiling = (f" (noise ceiling {ra.ceiling(rb, seeds):.3f} for {seeds}-seed means)"
                       if ra and rb else "")
            print(f"\n{low:g}x -> {high:g}x over {len(pairs)} directions: Spearman "
                  f"{stats.spearmanr(a, b)[0]:.3f}, Kendall {stats.kendalltau(a, b)[0]:.3f}"
                  f"{ceiling}")
    for factor in table.factors()[2:]:
        extrapolation(table, factor, reliability)
    print("\nbest direction by factor: " + " -> ".join(
        f"{f:g}x {_fmt(table.best(f).shares)}" for f in table.factors()))


def best_chances(table: Table, factor: float, seed_std: float, draws: int = 10_000,
                 seed: int = 0) -> list[tuple[tuple[float, ...], float]]:
    """How often each direction at `factor` is the best when each mean is drawn again from
    its seed noise (normal, the pooled seed std over the square root of its seeds): whether
    the table's best is the best or one of several the seeds cannot order. Directions that
    round to one network are one draw, named by the first of them. Most likely first."""
    networks: dict[str, Any] = {}
    for d in table.directions(factor):
        networks.setdefault(d.rows[0]["arch"], d)
    directions = list(networks.values())
    means = np.array([d.mean for d in directions])
    spread = seed_std / np.sqrt([len(d.rows) for d in directions])
    drawn = np.random.default_rng(seed).normal(means, spread, size=(draws, len(means)))
    wins = np.bincount(drawn.argmax(axis=1), minlength=len(means)) / draws
    return sorted(((d.shares, float(w)) for d, w in zip(directions, wins, strict=True)),
                  key=lambda x: -x[1])


def extrapolation(table: Table, target: float, reliability: dict) -> None:
    """Fits each forecast model on every training below `target` (one point per seed) and
    prints how it ranks `target`'s directions against their seed means: Spearman, its pick
    and that pick's regret, beside the factor just below's own ranking (the forecast must beat
    "the ranking carries") and the noise ceiling of the target's seed means."""
    below = [f for f in table.factors() if f < target]
    points = [(tuple(r["shares"]), r["factor"], r["val_top1"]) for r in table.rows
              if r["factor"] in below]
    directions = table.directions(target)
    truth = [d.mean for d in directions]
    best = table.best(target)
    print(f"\nforecast of {target:g}x from {', '.join(f'{f:g}x' for f in below)} "
          f"({len(points)} trainings) over its {len(directions)} directions:")
    for model in forecast.MODELS:
        why = forecast.check(points, model)
        if why:
            print(f"  {model:>11}: {why}")
            continue
        found = forecast.forecast(points, target, [d.shares for d in directions], model=model)
        rho = forecast.spearman(found, [d.shares for d in directions], truth)
        pick = table.nearest(found.best, target)
        print(f"  {model:>11} ({found.parameters} parameters): Spearman {rho:.3f}; picks "
              f"{_fmt(found.best)} (best in {found.p_best[0]:.0%} of refits), "
              f"{best.mean - pick.mean:+.4f} below the best, normalized regret "
              f"{table.regret(found.best, target):.3f}")
    at_last = {d.shares: d.mean for d in table.directions(below[-1])}
    carried = [(at_last[d.shares], d.mean) for d in directions if d.shares in at_last]
    if len(carried) >= 3:
        a, b = zip(*carried, strict=True)
        print(f"  {below[-1]:g}x's own ranking: Spearman {stats.spearmanr(a, b)[0]:.3f} over "
              f"{len(carried)} directions")
    r = reliability[target]
    if r is not None:
        print(f"  noise ceiling (the {len(r.seeds)}-seed means' reliability, square root): "
              f"{r.of_mean(len(r.seeds)) ** 0.5:.3f}")


def _fmt(shares) -> str:
    return "(" + ", ".join(f"{s:.2f}" for s in shares) + ")"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", choices=sorted(SETUPS), default="mnist5k")
    parser.add_argument("--journal", type=Path,
                        help="default: results/<dataset>/effsearch.journal")
    parser.add_argument("-o", "--output", type=Path,
                        help="default: results/<dataset>/direction_table.jsonl")
    parser.add_argument("--plot", type=Path,
                        help="the table on the share simplex, a panel per factor (default: "
                             "the output's name with .png)")
    args = parser.parse_args()
    results = HERE / "results" / args.dataset
    output = args.output or results / "direction_table.jsonl"
    table = export(args.journal or results / "effsearch.journal", output, SETUPS[args.dataset])
    print(f"wrote {output}: {len(table.rows)} trainings")
    plot = args.plot or output.with_suffix(".png")
    direction_table_figure(table).savefig(plot, dpi=110)
    print(f"wrote {plot}")
    report(table)


if __name__ == "__main__":
    main()
