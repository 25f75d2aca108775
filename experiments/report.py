"""Regenerates each results folder's report.md and figures from its recorded result files.

    python experiments/report.py [RESULTS_DIR ...]   (default: every folder in results/)

Reads the studies in RESULTS_DIR/effsearch.journal (written by `effsearch search`) and the
JSON files `effsearch compare -o` and `effsearch validate --json` wrote; nothing is typed in
by hand.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from search import records, storage
from search.comparison import comparison_figure
from search.plots import save_front
from search.study_commands import iso_costs


def fmt(value: Any, digits: int = 3) -> str:
    return records.fmt(value, f".{digits}f")


def study_section(study: Any, out: Path) -> list[str]:
    config = records.study_config(study)
    objective = config["objective"]
    cost = "latency_ms" if objective["cost"] == "latency" else objective["cost"]
    rows = records.trial_rows(study)
    ranked = records.front(rows, cost)
    rank = {r["trial"]: r["rank"] for r in ranked}
    rejected = sum("rejected" in t.user_attrs for t in study.get_trials())
    png = out / f"{study.study_name}.front.png"
    save_front(ranked, str(png), cost=cost, metric=objective["metric"],
               title=f"{study.study_name}: {len(ranked)} full-budget trials",
               iso_costs=iso_costs(config, ranked))
    lines = [f"### Study `{study.study_name}`", "",
             f"Objective: {objective['kind']} of `{objective['metric']}` vs `{objective['cost']}`;"
             f" proxy {config['proxy']['epochs']} epochs on {config['proxy']['dataset']}"
             f" (imbalance {config['proxy'].get('imbalance')}); {len(rows)} trained trials,"
             f" {rejected} rejected before training (solved alpha < 1).", ""]
    for how in ("best", "knee"):
        pick = records.pick(rows, how, cost)
        lines.append(f"- **{how}**: trial {pick['trial']}, alpha={pick['alpha']:.3f}, "
                     f"beta={pick['beta']:.3f}, gamma={pick['gamma']:.3f}, "
                     f"{objective['metric']}={pick['score']:.3f}, {pick['macs']:,} MACs")
    lines += ["", f"![front]({png.name})", "",
              "| trial | alpha | beta | gamma | reference | score | val top-1 | balanced acc. "
              "| MACs | params | latency ms | budget | rank | duplicate of |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in sorted(rows, key=lambda r: r["trial"]):
        lines.append("| " + " | ".join([
            str(r["trial"]), fmt(r["alpha"]), fmt(r["beta"]), fmt(r["gamma"]),
            fmt(r["reference"]), fmt(r["score"]), fmt(r["val_top1"]),
            fmt(r["val_balanced_accuracy"]), f"{r['macs']:,}", f"{r['params']:,}",
            fmt(r["latency_ms"]), f"{r['budget']}/{r['max_budget']}",
            fmt(rank.get(r["trial"], "")), fmt(r["duplicate_of"])]) + " |")
    return [*lines, ""]


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
