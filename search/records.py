"""Reading a study back: one row per trial, the Pareto front, and picking a result to export.

Works from the storage alone (the config is stored in the study's user attrs), imports no JAX,
so `effsearch front` answers in a second on a laptop pointed at a cluster's database.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

import space
from search.pareto import MAXIMIZE, MINIMIZE, knee, nondominated_ranks
from space import UserError

CONFIG_ATTR = "effsearch.config"
ROW_KEYS = ("alpha", "beta", "gamma", "product", "arch", "resolution", "val_top1", "val_loss",
            "val_balanced_accuracy", "val_worst_class_recall", "val_macro_f1", "test_top1",
            "macs", "params", "latency_ms", "macs_ratio", "realized_vs_ideal", "budget",
            "max_budget", "reference", "duplicate_of", "baseline_arch", "compile_s", "wall_s",
            "device", "seed")


def fmt(value: Any, spec: str = ".4g") -> str:
    """One table cell: "" for a missing value, floats by `spec`, anything else as str."""
    if value is None:
        return ""
    return format(value, spec) if isinstance(value, float) else str(value)


def study_config(study: optuna.Study) -> dict[str, Any]:
    """The config a study was created with, as JSON, or an error for a foreign study."""
    text = study.user_attrs.get(CONFIG_ATTR)
    if text is None:
        raise UserError(f"study '{study.study_name}' was not created by effsearch")
    return json.loads(text)


def trial_rows(study: optuna.Study) -> list[dict[str, Any]]:
    """Every trained trial (complete, or pruned by Optuna) as a flat dict."""
    config = study_config(study)
    metric = config["objective"]["metric"]
    rows = []
    for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED)):
        if "rejected" in t.user_attrs or metric not in t.user_attrs:
            continue
        row = {"trial": t.number, "state": t.state.name.lower(), "metric": metric,
               "score": t.user_attrs[metric]}
        row.update({k: t.user_attrs.get(k) for k in ROW_KEYS})
        row["values"] = t.values
        rows.append(row)
    return rows


def trial_line(trial: optuna.trial.FrozenTrial, metric: str) -> str | None:
    """One line saying how a finished trial ended, for logs and terminals; None if running."""
    attrs = trial.user_attrs
    head = f"trial {trial.number}"
    if trial.state in (TrialState.RUNNING, TrialState.WAITING):
        return None
    if "rejected" in attrs:
        return f"{head} rejected before training: {attrs['rejected']}"
    if attrs.get("surplus"):
        return None  # an extra ask of two racing workers: nothing ran
    if trial.state == TrialState.FAIL:
        why = attrs.get("reason") or attrs.get("error") or "its worker stopped (retried)"
        return f"{head} failed: {why}"
    parts = [f"{metric} {fmt(attrs.get(metric))}"]
    if attrs.get("macs") is not None:
        parts.append(f"{attrs['macs'] / 1e6:.3f}M MACs")
    if attrs.get("resolution") is not None:
        parts.append(f"{attrs['resolution']} px")
    if attrs.get("budget") is not None:
        parts.append(f"{attrs['budget']}/{attrs.get('max_budget')} epochs")
    if attrs.get("wall_s") is not None and "duplicate_of" not in attrs:
        parts.append(f"{attrs['wall_s']:.0f} s")
    if "duplicate_of" in attrs:
        how = f"reuses trial {attrs['duplicate_of']} (same network)"
    elif "stopped_at" in attrs:
        how = f"stopped by halving at epoch {attrs['stopped_at']}"
    elif trial.state == TrialState.PRUNED:
        how = "pruned"
    else:
        how = "done"
    label = f" [{attrs['reference']}]" if attrs.get("reference") else ""
    return f"{head}{label} {how}: {', '.join(parts)}"


def front(rows: Sequence[dict[str, Any]], cost: str = "macs", *,
          full_budget_only: bool = True) -> list[dict[str, Any]]:
    """Annotates rows with their non-dominated `rank` (0 = front) on (score up, cost down).

    Args:
        rows: from `trial_rows`.
        cost: "macs", "params" or "latency_ms".
        full_budget_only: compare only trials trained for the full proxy budget (a trial
            stopped at a rung has a lower, incomparable score).

    Returns:
        The compared rows, each with "rank", sorted by rank then cost.
    """
    rows = [dict(r) for r in rows if r.get(cost) is not None and r["state"] == "complete"
            and (not full_budget_only or r.get("budget") == r.get("max_budget"))]
    if not rows:
        return []
    values = np.array([[r["score"], r[cost]] for r in rows], dtype=float)
    for row, rank in zip(rows, nondominated_ranks(values, (MAXIMIZE, MINIMIZE)), strict=True):
        row["rank"] = int(rank)
    return sorted(rows, key=lambda r: (r["rank"], r[cost], r["trial"]))


def pick(rows: Sequence[dict[str, Any]], how: str, cost: str = "macs") -> dict[str, Any]:
    """The row to export: "best" score on the front (ties: lower cost), its "knee", or an ID.

    Raises:
        UserError: no trained trial, or an unknown trial number.
    """
    if how not in ("best", "knee"):
        try:
            number = int(how)
        except ValueError:
            raise UserError(f"--pick must be best, knee or a trial number, got '{how}'") from None
        for row in rows:
            if row["trial"] == number:
                return row
        raise UserError(f"trial {number} has no trained result in this study (trained: "
                        f"{', '.join(str(r['trial']) for r in rows) or 'none'})")
    ranked = front(rows, cost)
    if not ranked:
        raise UserError("the study has no trial trained for the full budget yet")
    on_front = [r for r in ranked if r["rank"] == 0]
    if how == "best":
        return max(on_front, key=lambda r: (r["score"], -r[cost]))
    # All full-budget rows, not just the front: a front of two is judged against their spread.
    values = np.array([[r["score"], r[cost]] for r in ranked], dtype=float)
    return ranked[knee(values, (MAXIMIZE, MINIMIZE))]


def provenance(study: optuna.Study, row: dict[str, Any], storage_url: str) -> dict[str, Any]:
    """Where an exported result came from: enough to reproduce or distrust it."""
    config = study_config(study)
    proxy = config["proxy"]
    search = config["search"]
    out = {
        "study": study.study_name, "storage": storage_url, "trial": row["trial"],
        "search": config["kind"], "objective": config["objective"],
        "selection_metric": row["metric"], "score": row["score"], "val_top1": row["val_top1"],
        "dataset": proxy["dataset"], "split_seed": proxy["split_seed"],
        "proxy_budget": {"epochs": row["budget"], "of": row["max_budget"],
                         "batch_size": proxy["batch_size"], "fraction": proxy["fraction"],
                         "optimizer": proxy["optimizer"]},
        "seed": row["seed"], "device": row["device"], "realized_macs": row["macs"],
        "params": row["params"], "arch": row["arch"], "resolution": row["resolution"],
    }
    if config["kind"] == "coefficients":
        out.update(baseline=search["baseline"], baseline_arch=row["baseline_arch"],
                   phi=search["phi"], target=search["target"],
                   baseline_width=proxy["width"], baseline_depth=proxy["depth"],
                   baseline_resolution=proxy["resolution"],
                   realized_vs_ideal_macs=row["realized_vs_ideal"])
    return out


def export(study: optuna.Study, row: dict[str, Any], path: str | Path,
           storage_url: str) -> Path:
    """Writes the picked result: coefficients (with provenance), or a baseline's arch file."""
    config = study_config(study)
    record = provenance(study, row, storage_url)
    if config["kind"] == "coefficients":
        search = config["search"]
        # The family exactly as searched: the baseline adapted to the proxy's data (resolution,
        # classes, channels) and the study's rounding, so `scale` of the file at the study's
        # phi rebuilds this trial's network. Studies from before channel_divisor used 8.
        coeffs = space.Coefficients(
            row["alpha"], row["beta"], row["gamma"], target=search["target"],
            baseline=row["baseline_arch"], resolution_multiple=search["resolution_multiple"],
            channel_divisor=search.get("channel_divisor", 8))
        return space.save_coefficients(coeffs, path, record)
    return space.save_arch(space.decode(row["arch"]), path, record)
