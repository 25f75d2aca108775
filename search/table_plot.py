"""A direction table drawn on the share simplex: one triangle per cost factor, each direction
at its (depth, width, resolution) shares, coloured by its mean score over seeds, the best
starred and the paper's direction marked, so that where the best direction lies, and how it
moves with the factor, can be seen at once (matplotlib; a ternary plot is a few lines of
barycentric coordinates, not worth a plotting dependency)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from search.manifold import shares_of
from space import PAPER

_HEIGHT = math.sqrt(3) / 2


def ternary(shares: Sequence[float]) -> tuple[float, float]:
    """Plane coordinates of (depth, width, resolution) shares: depth alone at (0, 0), width
    alone at (1, 0), resolution alone at the top (0.5, sqrt(3) / 2)."""
    _, width, resolution = shares
    return width + resolution / 2, resolution * _HEIGHT


def direction_table_figure(table: Any, metric: str = "val_top1") -> Any:
    """The figure: a panel per factor of `table` (`search.replay.Table`), its colour scale
    that factor's own range (the directions' spread, not the gain across factors, is what a
    panel shows; the titles give the best score)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from matplotlib.tri import Triangulation

    factors = table.factors()
    fig, axes = plt.subplots(1, len(factors), figsize=(4.6 * len(factors), 4.4), squeeze=False)
    for ax, factor in zip(axes[0], factors, strict=True):
        directions = table.directions(factor)
        xy = np.array([ternary(d.shares) for d in directions])
        scores = np.array([np.mean([r[metric] for r in d.rows]) for d in directions])
        ax.plot([0, 1, 0.5, 0], [0, 0, _HEIGHT, 0], color="0.6", lw=0.8)
        if len(directions) >= 6:  # a filled surface between the trained directions
            ax.tricontourf(Triangulation(xy[:, 0], xy[:, 1]), scores, levels=12,
                           cmap="viridis", alpha=0.45)
        dots = ax.scatter(xy[:, 0], xy[:, 1], c=scores, cmap="viridis", s=42,
                          edgecolors="k", linewidths=0.4, zorder=3)
        fig.colorbar(dots, ax=ax, shrink=0.7, label=f"mean {metric}")
        best = directions[int(np.argmax(scores))]
        ax.scatter(*ternary(best.shares), marker="*", s=260, color="red", edgecolors="k",
                   zorder=4, label="best")
        paper = ternary(list(shares_of(PAPER).values()))
        ax.scatter(*paper, marker="X", s=90, color="white", edgecolors="k", zorder=4,
                   label="paper (1.2, 1.1, 1.15)")
        for text, (x, y), align in (("depth", (0, 0), "right"), ("width", (1, 0), "left"),
                                    ("resolution", (0.5, _HEIGHT), "center")):
            ax.annotate(text, (x, y), xytext=(0, 10 if text == "resolution" else -14),
                        textcoords="offset points", ha=align, fontsize=9)
        seeds = len({r["seed"] for d in directions for r in d.rows})
        shares = ", ".join(f"{s:.2f}" for s in best.shares)
        ax.set_title(f"{factor:g}x: {len(directions)} directions, {seeds} seed(s)\n"
                     f"best ({shares}): {scores.max():.4f}", fontsize=10)
        ax.set_xlim(-0.12, 1.12)  # room for the corners' markers and names
        ax.set_ylim(-0.1, _HEIGHT + 0.1)
        ax.set_aspect("equal")
        ax.set_axis_off()
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=9, frameon=False)
    fig.tight_layout(w_pad=2, rect=(0, 0.06, 1, 1))
    return fig
