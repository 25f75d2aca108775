"""Regenerates each results folder's report.md and figures from its recorded result files.

    python experiments/report.py [RESULTS_DIR ...]   (default: every folder in results/)

Reads the studies in RESULTS_DIR/effsearch.journal (written by `effsearch search`) and the
JSON files `effsearch compare -o` and `effsearch validate --json` wrote; nothing is typed in
by hand.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import Any

from search import kinds, ladder, records, storage
from search.comparison import comparison_figure
from search.plots import front_plot, save_front


def fmt(value: Any, digits: int = 3) -> str:
    return records.fmt(value, f".{digits}f")


def study_section(study: Any, out: Path) -> list[str]:
    config = records.study_config(study)
    kind = kinds.from_stored(config)
    objective = config["objective"]
    cost = records.cost_field(config)
    rows = records.trial_rows(study)
    ranked = records.front(rows, cost)
    if objective["kind"] != "pareto":  # one objective: the ranking by score
        ranked = [dataclasses.replace(r, rank=i) for i, r in enumerate(
            sorted(ranked, key=lambda r: (-r.score, r.trial)))]
    rank = {r.trial: r.rank for r in ranked}
    rejected = [t.user_attrs["rejected"] for t in study.get_trials() if "rejected" in t.user_attrs]
    png = out / f"{study.study_name}.front.png"
    distinct = len({r.arch for r in ranked})
    save_front(front_plot(ranked, config, f"{study.study_name}: {distinct} distinct networks "
                                          f"trained for the full budget"), str(png))
    match = getattr(kind, "match", None)  # a coefficient search matched in cost
    scored = (f"`{objective['metric']}` alone at matched {kind.growth:g}x the baseline's "
              f"{match}" if objective["kind"] == "metric" and match else
              f"{objective['kind']} of `{objective['metric']}` vs `{objective['cost']}`")
    promoted = sum(r.promoted_from is not None for r in rows)
    full = sum(r.full_budget and r.promoted_from is None for r in rows)
    lines = [f"### Study `{study.study_name}`", "",
             f"{kind.name.capitalize()} search. Objective: {scored}; proxy "
             f"{config['proxy']['epochs']} epochs on {config['proxy']['dataset']} (imbalance "
             f"{config['proxy'].get('imbalance')}); {len(rows) - promoted} trained trials "
             f"({full} to the full budget at once, {promoted} more by promotion), "
             f"{len(rejected)} rejected before training.", ""]
    for how in ("best", "knee") if objective["kind"] == "pareto" else ("best",):
        pick = records.pick(rows, how, cost)
        lines.append(f"- **{how}**: trial {pick.trial}, {kind.describe(pick)}, "
                     f"{objective['metric']}={pick.score:.3f}, {pick.macs:,} MACs")
    columns = [*kind.columns, "reference", "score", "val top-1", "balanced acc.", "MACs",
               "params", "latency ms", "budget", "rank", "duplicate of", "promoted from"]
    lines += ["", f"![front]({png.name})", "", "| trial | " + " | ".join(columns) + " |",
              "|---" * (len(columns) + 1) + "|"]
    for r in sorted(rows, key=lambda r: r.trial):
        lines.append("| " + " | ".join([
            str(r.trial), *(_identity(r.get(c)) for c in kind.columns), fmt(r.reference),
            fmt(r.score), fmt(r.val_top1), fmt(r.val_balanced_accuracy), f"{r.macs:,}",
            f"{r.params:,}", fmt(r.latency_ms), f"{r.budget}/{r.max_budget}",
            fmt(rank.get(r.trial, "")), fmt(r.duplicate_of), fmt(r.promoted_from)]) + " |")
    record = ladder.load(study)
    if record:
        lines += ["", *ladder_section(record)]
    return [*lines, ""]


def ladder_section(record: dict[str, Any]) -> list[str]:
    metric, tolerance = record["metric"], record["tolerance"]
    best = ladder.best_candidate(record)
    lines = [f"Scale ladder ({len(record['seeds'])} seeds, {record['epochs']} epochs, matched "
             f"{record['cost']}; mean +- std; cost ratio starred where the member is more than "
             f"{tolerance:.0%} from its factor; the exported direction, the searched one best "
             f"by mean {metric} at {max(record['factors']):g}x among those within it, is trial "
             f"{best['trial']}):", "",
             f"| factor | direction | role | setting | res | cost ratio | {metric} | test top-1 |",
             "|---|---|---|---|---|---|---|---|"]
    for r in sorted(record["rows"], key=lambda r: (r["factor"], -r[f"{metric}_mean"])):
        setting = (f"phi={r['parameter']:.3f}" if r["kind"] == "compound"
                   else f"x{r['parameter']:.3f}")
        error = ladder.match_error(r, record)
        star = "*" if abs(error) > tolerance else ""
        lines.append(f"| {r['factor']:g}x | {r['method']} | {r['role']} | {setting} | "
                     f"{r['resolution']} | {r['factor'] * (1 + error):.2f}{star} | "
                     f"{r[metric + '_mean']:.3f} +- {r[metric + '_std']:.3f} | "
                     f"{r['test_top1_mean']:.3f} +- {r['test_top1_std']:.3f} |")
    contrasts = ladder.contrasts(record)
    if contrasts:
        lines += ["", "The exported direction against the paper's and the best single dimension "
                      "at each factor (test top-1, difference of means +- its standard error):",
                  "", "| factor | against | difference | in standard errors | Welch p |",
                  "|---|---|---|---|---|"]
        for c in contrasts:
            z, p = (f"{c['z']:+.1f}", f"{c['p']:.2g}") if c["z"] is not None else ("-", "-")
            lines.append(f"| {c['factor']:g}x | {c['against']} ({c['method']}) | "
                         f"{c['difference']:+.4f} +- {c['se']:.4f} | {z} | {p} |")
    return lines


def _identity(value: Any) -> str:
    """A kind's identifying column: coefficients to 3 decimals, an arch string as code."""
    return f"`{value}`" if isinstance(value, str) else fmt(value)


def comparison_section(path: Path, out: Path) -> list[str]:
    import matplotlib.pyplot as plt

    record = json.loads(path.read_text())
    rows = record["rows"]
    fig = comparison_figure(rows)
    fig.savefig(out / "comparison.png")
    plt.close(fig)
    lines = ["### Scaling methods at equal realized MACs", "",
             f"Baseline `{record['baseline']}`; seeds {record['seeds']}; "
             f"{record['proxy']['epochs']} epochs on {record['dataset']['name']}.", "",
             "![comparison](comparison.png)", "",
             "| factor | method | setting | res | MACs ratio | params | latency ms "
             "| val top-1 | test top-1 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        setting = (f"phi={r['parameter']:.3f}" if r["kind"] == "compound"
                   else f"x{r['parameter']:.3f}")
        lines.append(f"| {r['factor']:g}x | {r['method']} | {setting} | {r['resolution']} | "
                     f"{r['macs_ratio']:.2f} | {r['params']:,} | {fmt(r['latency_ms'], 2)} | "
                     f"{r['val_top1_mean']:.3f} +- {r['val_top1_std']:.3f} | "
                     f"{r['test_top1_mean']:.3f} +- {r['test_top1_std']:.3f} |")
    return [*lines, ""]


def validation_section(path: Path) -> list[str]:
    report = json.loads(path.read_text())
    lines = ["### Proxy fidelity", "",
             f"Top {len(report['rows'])} trials retrained for {report['long_epochs']} epochs "
             f"(proxy: {report['proxy_epochs']}): Spearman rho = {fmt(report['spearman'])} "
             f"(p = {fmt(report['p_spearman'])}), Kendall tau = {fmt(report['kendall'])} "
             f"(p = {fmt(report['p_kendall'])}).", "",
             "| trial | alpha | beta | gamma | MACs | proxy score | long score |",
             "|---|---|---|---|---|---|---|"]
    for r in report["rows"]:
        lines.append(f"| {r['trial']} | {fmt(r['alpha'])} | {fmt(r['beta'])} | "
                     f"{fmt(r['gamma'])} | {r['macs']:,} | {fmt(r['proxy_score'])} | "
                     f"{fmt(r['long_score'])} |")
    if report["warning"]:
        lines += ["", f"Warning: {report['warning']}"]
    return [*lines, ""]


def main(results: Path) -> None:
    lines = ["# Recorded results (generated by experiments/report.py; do not edit)", ""]
    journal = results / storage.JOURNAL_NAME
    if journal.exists():
        store = storage.open_storage(str(journal), create=False)
        for name in sorted(storage.study_names(store)):
            lines += study_section(storage.load_study(store, name, str(journal)), results)
    if (results / "comparison.json").exists():
        lines += comparison_section(results / "comparison.json", results)
    if (results / "validation.json").exists():
        lines += validation_section(results / "validation.json")
    (results / "report.md").write_text("\n".join(lines) + "\n")
    print(f"wrote {results / 'report.md'}")


if __name__ == "__main__":
    folders = ([Path(a) for a in sys.argv[1:]]
               or sorted(p for p in (Path(__file__).parent / "results").iterdir() if p.is_dir()))
    for folder in folders:
        main(folder)
