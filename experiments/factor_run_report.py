r"""The factor search run for real, beside the direction table's numbers (issue 26, part 3).

    python experiments/factor_run_report.py [--study cifar10-factors] [--target 8]
        [--workdir experiments/results/cifar10] [--table .../direction_table.jsonl]
        [--replay experiments/results/factors/cifar10-target8.json] [--json]

What the study trained at each factor and what it cost (MACs x epochs per image, as the
replay benchmark counts it, and wall time); then two answers judged at the target on the
table's seed means, as benchmarks/factor_efficiency.py judges replays: (c) the study's
export, the best confirmed direction at its largest factor (also judged on the table's seeds
other than the study's own, since a training of that seed chose it), and (f) the separable
forecast fitted on the study's rungs below the target (`search/forecast.py`) with the one
training at the target that would confirm it. Compute is also given relative to the
replayed default search at the target alone ("target-only" in the replay's JSON), when that
file is there.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from search import factor_rungs, ladder, records  # noqa: E402
from search.forecast import check, forecast, spearman, study_points  # noqa: E402
from search.halving import PROMOTED_FROM, PROMOTED_RUNG  # noqa: E402
from search.kinds.base import FACTOR  # noqa: E402
from search.replay import Table  # noqa: E402
from search.storage import load_study, open_storage, storage_url  # noqa: E402

RESULTS = HERE / "results"


def trainings(trials: list[optuna.trial.FrozenTrial]) -> list[dict[str, Any]]:
    """Every training the study ran (rejected proposals, reused networks and failed trials
    left out): its factor, the epochs it trained itself (a promotion resumed from its
    original's checkpoint trains the epochs after it; `resumed_at` is absent when the
    checkpoint could not be read and it trained from epoch 1), whether it ended stopped by
    halving (an original that a promotion continued did not end: `continued`), MACs per image
    and wall seconds."""
    # Halving's promotions (which carry the rung they resume from); a climb to the next
    # factor is a new training, not a continuation.
    continued = {t.user_attrs[PROMOTED_FROM] for t in trials if PROMOTED_RUNG in t.user_attrs}
    out = []
    for t in trials:
        a = t.user_attrs
        if t.state not in (TrialState.COMPLETE, TrialState.PRUNED) or "rejected" in a \
                or "duplicate_of" in a or a.get("budget") is None or a.get("macs") is None:
            continue
        out.append({"trial": t.number, "factor": float(a.get(FACTOR, math.nan)),
                    "epochs": int(a["budget"]) - int(a.get("resumed_at") or 0),
                    "full": a["budget"] == a.get("max_budget"),
                    "continued": t.number in continued, "macs": float(a["macs"]),
                    "wall_s": float(a.get("wall_s") or 0.0)})
    return out


def judge(table: Table, shares: tuple[float, ...], target: float, tolerance: float | None,
          drawn: int | None = None) -> dict[str, Any]:
    """Where `shares` lands among the table's directions at `target` (its nearest recorded
    direction): the seed mean, rank (1 = best), normalized regret, gap to the best and
    whether that gap is within one pooled standard error of the best's mean, judged on all of
    its seeds; with `drawn` (the seed of a training at the target that chose it) also on the
    other seeds alone (`held_out`), as benchmarks/factor_efficiency.py judges such picks."""
    directions = table.directions(target, tolerance)
    means = sorted((d.mean for d in directions), reverse=True)
    mine = table.nearest(shares, target, tolerance)
    se = table.pooled_se(target, tolerance)

    def verdict(mean: float) -> dict[str, Any]:
        gap = max(0.0, means[0] - mean)
        spread = means[0] - means[-1]
        return {"mean": mean, "gap": gap, "regret": gap / spread if spread else 0.0,
                "within_se": gap <= se + 1e-12}
    out = {"shares": list(shares), "table_shares": list(mine.shares), "seeds": len(mine.rows),
           "rank": 1 + sum(m > mine.mean + 1e-12 for m in means), "of": len(means),
           "pooled_se": se} | verdict(mine.mean)
    others = [r["val_top1"] for r in mine.rows if r["seed"] != drawn]
    if drawn is not None and others:
        out["held_out"] = verdict(float(sum(others) / len(others))) | {"seeds": len(others)}
    return out


def report(study: optuna.Study, table: Table, target: float,
           replay: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The study's trainings and its two answers at `target`, judged on `table`."""
    trials = study.get_trials(deepcopy=False)
    rows = records.trial_rows(study)
    done = trainings(trials)
    record = ladder.load(study)
    config = records.study_config(study)
    search = config["search"]
    # The directions a search with this tolerance may train, as the replay judges them.
    tolerance = search["tolerance"] if search.get("match") else None
    factors = sorted({t["factor"] for t in done})
    # A stopped original and the promotion that continued it are one training.
    per_factor = {f"{f:g}": {"trainings": sum(t["factor"] == f and not t["continued"]
                                              for t in done),
                             "stopped": sum(t["factor"] == f and not t["full"]
                                            and not t["continued"] for t in done),
                             "epochs": sum(t["epochs"] for t in done if t["factor"] == f),
                             "compute": sum(t["macs"] * t["epochs"] for t in done
                                            if t["factor"] == f),
                             "wall_s": sum(t["wall_s"] for t in done if t["factor"] == f)}
                  for f in factors}
    search_compute = sum(v["compute"] for v in per_factor.values())
    out: dict[str, Any] = {"study": study.study_name, "target": target,
                           "per_factor": per_factor, "search_compute": search_compute}

    # (c): the export, the confirmed best at the largest factor. The confirmation's first
    # seed is the search's own training where it trained that network (`own_trainings`);
    # the other seeds are trained anew.
    if record and any(r["role"] == "candidate" for r in record["rows"]):
        best = ladder.best_candidate(record)
        metric = record["metric"]
        own = factor_rungs.own_trainings(trials)
        largest = max(record["factors"])
        confirm = record["epochs"] * sum(
            r["macs"] * sum(own(r["arch"], seed) is None for seed in record["seeds"])
            for r in record["rows"] if r["role"] == "candidate" and r["factor"] == largest)
        shares = next((float(r.depth_share or 0), float(r.width_share or 0),
                       float(r.resolution_share or 0)) for r in rows if r.trial == best["trial"])
        # The search's training at the largest factor chose it (its seed is the proxy's).
        out["export"] = judge(table, shares, target, tolerance,
                              drawn=config["proxy"]["seed"]) | {
            "factor": largest, "seeds_trained": len(record["seeds"]),
            "val_mean": best[f"{metric}_mean"], "val_std": best[f"{metric}_std"],
            "test_mean": best.get("test_top1_mean"), "compute": search_compute + confirm}

    # (f): the forecast from the rungs below the target, confirmed by one training there.
    below = [r for r in rows if r.factor is not None and r.factor < target - 1e-9]
    points = study_points(below)
    why = check(points, "separable")
    if why:
        out["forecast"] = {"none": why}
    else:
        directions = table.directions(target, tolerance)
        candidates = [d.shares for d in directions]
        result = forecast(points, target, candidates)  # with its bootstrap intervals
        pick = table.nearest(result.best, target, tolerance)
        compute = sum(v["compute"] for f, v in per_factor.items() if float(f) < target - 1e-9)
        out["forecast"] = judge(table, result.best, target, tolerance) | {
            "left_out": result.left_out, "vague": result.vague,
            "interval": [result.low[0], result.high[0]],
            "spearman": spearman(result, candidates, [d.mean for d in directions]),
            "compute": compute + pick.rows[0]["macs"] * pick.rows[0]["epochs"]}
    out["table_best"] = judge(table, table.best(target, tolerance).shares, target, tolerance)
    target_only = next((r for r in replay or [] if r["kind"] == "target-only"), None)
    if target_only:
        out["target_only_compute"] = target_only["compute_mean"]
        for key in ("export", "forecast"):
            if "compute" in out.get(key, {}):
                out[key]["compute_vs_target_only"] = (out[key]["compute"]
                                                      / target_only["compute_mean"])
    return out


def markdown(r: dict[str, Any]) -> str:
    """The report as experiments/README.md shows it."""
    lines = [f"study '{r['study']}', judged at {r['target']:g}x on the direction table\n",
             "| factor | trainings | stopped by halving | epochs | compute (MACs x epochs) "
             "| wall (s, summed) |", "|---|---|---|---|---|---|"]
    for factor, v in r["per_factor"].items():
        lines.append(f"| {factor}x | {v['trainings']} | {v['stopped']} | {v['epochs']} "
                     f"| {v['compute']:.3g} | {v['wall_s']:.0f} |")
    lines += ["", "| answer | direction (d, w, r) | table's nearest | table mean at target "
              "| rank | normalized regret | within 1 SE | compute | x target-only |",
              "|---|---|---|---|---|---|---|---|---|"]
    names = {"export": "(c) the export (confirmed)", "forecast": "(f) the forecast + 1 training",
             "table_best": "the table's best"}
    for key, name in names.items():
        j = r.get(key, {})
        if "none" in j or not j:
            lines.append(f"| {name} | {j.get('none', 'none')} | | | | | | | |")
            continue
        ratio = j.get("compute_vs_target_only")
        within = "yes" if j["within_se"] else "no"
        if "held_out" in j:
            h = j["held_out"]
            within += (f" ({'yes' if h['within_se'] else 'no'} on the {h['seeds']} seed(s) "
                       f"that did not choose it: {h['mean']:.4f})")
        lines.append(
            f"| {name} | {_shares(j['shares'])} | {_shares(j['table_shares'])} "
            f"| {j['mean']:.4f} ({j['seeds']} seeds) | {j['rank']} of {j['of']} "
            f"| {j['regret']:.3f} | {within} "
            f"| {j.get('compute', 0):.3g} | {'' if ratio is None else f'{ratio:.2f}'} |")
    if "val_mean" in r.get("export", {}):
        e = r["export"]
        lines.append(f"\nthe export's confirmation at {e['factor']:g}x: val "
                     f"{e['val_mean']:.4f} +- {e['val_std']:.4f} over {e['seeds_trained']} "
                     f"seeds, test {e['test_mean']:.4f}")
    if "spearman" in r.get("forecast", {}):
        f = r["forecast"]
        lines.append(f"the forecast's Spearman against the table's means at {r['target']:g}x: "
                     f"{f['spearman']:.2f} ({f['left_out']} trainings left out as too short); "
                     f"its pick's 95% interval {f['interval'][0]:.3f} to {f['interval'][1]:.3f}"
                     f"{' (vague: a shortlist, not a ranking)' if f['vague'] else ''}")
    se = r["table_best"]["pooled_se"]
    lines.append(f"one pooled standard error of the best at {r['target']:g}x: {se:.4f}")
    return "\n".join(lines)


def _shares(shares: list[float]) -> str:
    return "(" + ", ".join(f"{s:.2f}" for s in shares) + ")"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--study", default="cifar10-factors")
    p.add_argument("--target", type=float, default=8.0)
    p.add_argument("--workdir", default=str(RESULTS / "cifar10"))
    p.add_argument("--table", default=None, help="default: WORKDIR/direction_table.jsonl")
    p.add_argument("--replay", default=str(RESULTS / "factors" / "cifar10-target8.json"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    table_path = Path(args.table or Path(args.workdir) / "direction_table.jsonl")
    url = storage_url(args.workdir, None)
    try:
        table = Table.load(table_path)
        study = load_study(open_storage(url, create=False), args.study, url)
    except (OSError, KeyError, ValueError) as e:
        p.exit(2, f"factor_run_report: {e}\n")
    if not any(math.isclose(f, args.target) for f in table.factors()):
        p.exit(2, f"factor_run_report: the table has no rows at {args.target:g}x\n")
    replay = Path(args.replay)
    out = report(study, table, args.target,
                 json.loads(replay.read_text()) if replay.is_file() else None)
    print(json.dumps(out, indent=1, default=float) if args.json else markdown(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
