"""The Pareto-front figure: PNG, or a self-contained HTML page with the figure and the table.

matplotlib only (Optuna's own `plot_pareto_front` needs plotly, one more heavy dependency, and
cannot draw iso-cost lines or the paper's point).
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from search import records
from space import UserError

COST_LABEL = {"macs": "MACs", "params": "parameters", "latency_ms": "latency (ms)"}


def front_figure(rows: Sequence[dict[str, Any]], *, cost: str, metric: str, title: str,
                 iso_costs: Sequence[tuple[str, float]] = ()) -> Any:
    """Score vs cost: the front in colour (joined by a step line), dominated trials faded,
    reference points (paper, single-dimension controls) labelled, iso-cost lines dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5), dpi=120)
    dominated = [r for r in rows if r["rank"] > 0]
    on_front = sorted((r for r in rows if r["rank"] == 0), key=lambda r: r[cost])
    ax.scatter([r[cost] for r in dominated], [r["score"] for r in dominated], s=18,
               color="0.6", alpha=0.35, label="dominated")
    ax.step([r[cost] for r in on_front], [r["score"] for r in on_front], where="post",
            color="C0", alpha=0.6)
    ax.scatter([r[cost] for r in on_front], [r["score"] for r in on_front], s=30, color="C0",
               zorder=3, label="Pareto front")
    for r in rows:
        if r.get("reference") == "paper":
            ax.scatter([r[cost]], [r["score"]], marker="*", s=180, color="C3", zorder=4,
                       label="paper (1.2, 1.1, 1.15)")
        elif r.get("reference"):
            ax.scatter([r[cost]], [r["score"]], marker="D", s=40, color="C2", zorder=4)
            ax.annotate(r["reference"], (r[cost], r["score"]), textcoords="offset points",
                        xytext=(5, -10), fontsize=7, color="C2")
    for i, (label, value) in enumerate(iso_costs):
        ax.axvline(value, color="0.3", ls=(0, (4, 3)), lw=0.8)
        ax.annotate(label, (value, 1), xycoords=("data", "axes fraction"), rotation=90,
                    xytext=(-10, -4 - 60 * (i % 2)), textcoords="offset points", va="top",
                    fontsize=7, color="0.3")
    ax.set_xlabel(COST_LABEL.get(cost, cost))
    ax.set_ylabel(metric)
    ax.set_title(title, fontsize=9)
    ax.grid(alpha=0.3)
    ax.margins(x=0.08, y=0.12)  # keep markers at the extremes clear of the frame
    ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    return fig


def save_front(rows: Sequence[dict[str, Any]], path: str, *, table_html: str = "",
               **kwargs: Any) -> Path:
    """Writes the figure as .png, or as .html with the figure embedded and the table below."""
    import matplotlib.pyplot as plt

    out = Path(path)
    if out.suffix not in (".png", ".html"):
        raise UserError(f"--plot must end in .png or .html, got '{path}'")
    fig = front_figure(rows, **kwargs)
    try:
        if out.suffix == ".png":
            fig.savefig(out)
        else:
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            image = base64.b64encode(buffer.getvalue()).decode()
            title = html.escape(kwargs.get("title", "Pareto front"))
            out.write_text(f"<!doctype html><html><head><meta charset='utf-8'><title>{title}"
                           f"</title></head><body><img src='data:image/png;base64,{image}'>"
                           f"{table_html}</body></html>\n")
    finally:
        plt.close(fig)
    return out


def html_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    cells = ("".join(f"<td>{html.escape(records.fmt(r.get(c)))}</td>" for c in columns)
             for r in rows)
    body = "".join(f"<tr>{c}</tr>" for c in cells)
    return f"<table border='1' cellspacing='0' cellpadding='3'><tr>{head}</tr>{body}</table>"


