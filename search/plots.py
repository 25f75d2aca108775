"""The Pareto-front figure: what it shows (`front_plot`, tested) and how it is drawn (PNG, or a
self-contained HTML page with the figure and the table).

matplotlib only (Optuna's own `plot_pareto_front` needs plotly, one more heavy dependency, and
cannot draw iso-cost lines or the paper's point).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import space
from search import kinds, records
from search.records import TrialRow
from space import UserError

COST_LABEL = {"macs": "MACs", "params": "parameters", "latency_ms": "latency (ms)"}

Point = tuple[float, float]  # (cost, score)


class FrontPlot(NamedTuple):
    """Everything the figure draws, in data units."""

    title: str
    x_label: str
    y_label: str
    front: list[Point]  # the rank-0 points, by cost (joined by a step line)
    dominated: list[Point]
    paper: list[Point]  # the paper's triple (a star)
    references: list[tuple[str, Point]]  # other labelled references (controls, seed)
    iso_costs: list[tuple[str, float]]  # dashed vertical lines
    pareto: bool = True  # two objectives; else `front` is the best trial, the rest "others"


def front_plot(ranked: Sequence[TrialRow], config: dict[str, Any], title: str) -> FrontPlot:
    """What the front's figure shows, from `records.front` rows and the stored config.

    Iso-cost lines are drawn only when the cost is MACs: the baseline's (from the trials'
    recorded baseline) and the search kind's target.
    """
    cost = records.cost_field(config)

    def point(r: TrialRow) -> Point:
        return (float(r.get(cost)), float(r.score))

    iso: list[tuple[str, float]] = []
    if cost == "macs" and ranked and ranked[0].baseline_arch:
        base = space.cost(space.decode(ranked[0].baseline_arch)).macs
        iso = kinds.from_stored(config).iso_costs(base)
    pareto = config["objective"]["kind"] == "pareto"
    # One objective: `ranked` is by score (rank 0 = best), and nothing is "dominated".
    best = {r.trial for r in ranked if r.rank == 0} if pareto else (
        {max(ranked, key=lambda r: (r.score, -r.trial)).trial} if ranked else set())
    return FrontPlot(
        title=title, x_label=COST_LABEL.get(cost, cost), y_label=config["objective"]["metric"],
        front=sorted(point(r) for r in ranked if r.trial in best),
        dominated=[point(r) for r in ranked if r.trial not in best],
        paper=[point(r) for r in ranked if r.reference == "paper"],
        references=[(r.reference, point(r)) for r in ranked
                    if r.reference and r.reference != "paper"],
        iso_costs=iso, pareto=pareto)


def front_figure(plot: FrontPlot) -> Any:
    """Draws a `FrontPlot`: the front in colour, dominated trials faded, the paper's point a
    star, other references labelled, iso-cost lines dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    ax.scatter(*_xy(plot.dominated), s=18, color="0.6", alpha=0.35,
               label="dominated" if plot.pareto else "other full-budget trials")
    if plot.pareto:
        ax.step(*_xy(plot.front), where="post", color="C0", alpha=0.6)
    ax.scatter(*_xy(plot.front), s=30, color="C0", zorder=3,
               label="Pareto front" if plot.pareto else f"best {plot.y_label}")
    if plot.paper:
        ax.scatter(*_xy(plot.paper), marker="*", s=180, color="C3", zorder=4,
                   label="paper (1.2, 1.1, 1.15)")
    for label, (x, y) in plot.references:
        ax.scatter([x], [y], marker="D", s=40, color="C2", zorder=4)
        ax.annotate(label, (x, y), textcoords="offset points", xytext=(5, -10), fontsize=7,
                    color="C2")
    for i, (label, value) in enumerate(plot.iso_costs):
        ax.axvline(value, color="0.3", ls=(0, (4, 3)), lw=0.8)
        ax.annotate(label, (value, 1), xycoords=("data", "axes fraction"), rotation=90,
                    xytext=(-10, -4 - 60 * (i % 2)), textcoords="offset points", va="top",
                    fontsize=7, color="0.3")
    ax.set_xlabel(plot.x_label)
    ax.set_ylabel(plot.y_label)
    ax.set_title(plot.title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(x=0.08, y=0.12)  # keep markers at the extremes clear of the frame
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def _xy(points: Sequence[Point]) -> tuple[list[float], list[float]]:
    return [p[0] for p in points], [p[1] for p in points]


def save_front(plot: FrontPlot, path: str, *, table_html: str = "") -> Path:
    """Writes the figure as .png, or as .html with the figure embedded and the table below."""
    import matplotlib.pyplot as plt

    out = Path(path)
    if out.suffix not in (".png", ".html"):
        raise UserError(f"--plot must end in .png or .html, got '{path}'")
    fig = front_figure(plot)
    try:
        if out.suffix == ".png":
            fig.savefig(out)
        else:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            image = base64.b64encode(buffer.getvalue()).decode()
            out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>"
                           f"{html.escape(plot.title)}</title></head><body><img "
                           f"src='data:image/png;base64,{image}'>{table_html}</body></html>\n")
    finally:
        plt.close(fig)
    return out


def html_table(rows: Sequence[TrialRow], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    cells = ("".join(f"<td>{html.escape(records.fmt(r.get(c)))}</td>" for c in columns)
             for r in rows)
    body = "".join(f"<tr>{c}</tr>" for c in cells)
    return f"<table border='1' cellspacing='0' cellpadding='3'><tr>{head}</tr>{body}</table>"
