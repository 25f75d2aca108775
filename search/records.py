"""Reading a study back: one typed row per trial, the Pareto front, and picking a result.

Works from the storage alone (the config is stored in the study's user attrs), imports no JAX,
so `effsearch front` answers in a second on a laptop pointed at a cluster's database.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import optuna
from optuna.trial import TrialState

from search import kinds
from search.pareto import MAXIMIZE, MINIMIZE, knee, nondominated_ranks
from space import UserError

CONFIG_ATTR = "effsearch.config"


@dataclasses.dataclass(frozen=True)
class TrialRow:
    """One trained trial, as `front`, `export`, the plots and experiments/report.py read it.

    The result fields are those a trial records from `trainers.proxy.ProxyResult`
    (`search.controller.RESULT_ATTRS`); the candidate fields are what its search kind
    recorded at proposal (coefficients and cost ratios, or only the arch); `rank` is set by
    `front`.
    """

    trial: int
    state: str  # "complete" or "pruned" (by an Optuna pruner)
    metric: str  # the objective's metric
    score: float  # its value
    values: tuple[float, ...] | None  # what Optuna was told
    arch: str
    resolution: int
    macs: int
    params: int
    budget: int | None  # epochs trained
    max_budget: int | None  # the proxy's full budget
    activations: int | None = None
    # the candidate, as its search kind proposed it
    alpha: float | None = None
    beta: float | None = None
    gamma: float | None = None
    product: float | None = None
    depth_share: float | None = None  # of the log-cost: the direction
    width_share: float | None = None
    resolution_share: float | None = None
    phi: float | None = None  # where the direction was trained
    factor: float | None = None  # the cost factor it was trained at (a study with factors)
    match_ratio: float | None = None  # its matched cost over the baseline's
    match_error: float | None = None  # match_ratio / the study's factor - 1
    macs_ratio: float | None = None
    realized_vs_ideal: float | None = None
    baseline_arch: str | None = None
    reference: str | None = None  # "paper", "depth-only", ..., "seed"
    duplicate_of: int | None = None  # reuses that trial's result (same rounded network)
    promoted_from: int | None = None  # halving resumed that stopped trial (retrained), or
    # (with factors) that trial's direction was promoted to this larger factor
    latency_ms: float | None = None
    # the proxy's result
    val_top1: float | None = None
    val_loss: float | None = None
    val_balanced_accuracy: float | None = None
    val_worst_class_recall: float | None = None
    val_macro_f1: float | None = None
    test_top1: float | None = None
    compile_s: float | None = None
    wall_s: float | None = None
    device: str | None = None
    seed: int | None = None
    rank: int | None = None  # non-dominated rank among full-budget trials; 0 = the front

    def get(self, field: str) -> Any:
        """A field by name, None if this row has no such field (for table columns)."""
        return getattr(self, field, None)

    @property
    def triple(self) -> tuple[float, float, float]:
        """(alpha, beta, gamma) of a coefficient search's trial."""
        if self.alpha is None or self.beta is None or self.gamma is None:
            raise UserError(f"trial {self.trial} has no coefficients (not a coefficient "
                            f"search)")
        return self.alpha, self.beta, self.gamma

    @property
    def full_budget(self) -> bool:
        return self.budget is not None and self.budget == self.max_budget

    @classmethod
    def from_trial(cls, trial: optuna.trial.FrozenTrial, metric: str) -> TrialRow:
        attrs = trial.user_attrs
        known = {f.name for f in dataclasses.fields(cls)}
        return cls(trial=trial.number, state=trial.state.name.lower(), metric=metric,
                   score=attrs[metric], values=tuple(trial.values) if trial.values else None,
                   **{k: v for k, v in attrs.items()
                      if k in known and k not in ("trial", "state", "metric", "score",
                                                  "values", "rank")})


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


def cost_field(config: dict[str, Any]) -> str:
    """The `TrialRow` field of the study's cost objective (latency is stored in ms)."""
    cost = config["objective"]["cost"]
    return "latency_ms" if cost == "latency" else cost


def trial_rows(study: optuna.Study) -> list[TrialRow]:
    """Every trained trial (complete, or pruned), in trial order."""
    return rows_of(study.get_trials(deepcopy=False),
                   study_config(study)["objective"]["metric"])


def rows_of(trials: Sequence[optuna.trial.FrozenTrial], metric: str) -> list[TrialRow]:
    """The trained trials among `trials` as rows (for callers that already hold the trials)."""
    return [TrialRow.from_trial(t, metric) for t in trials
            if t.state in (TrialState.COMPLETE, TrialState.PRUNED)
            and "rejected" not in t.user_attrs and metric in t.user_attrs]


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
    if "promoted_from" in attrs and "promoted_rung" not in attrs and "factor" in attrs:
        label += f" (trial {attrs['promoted_from']}'s direction at {attrs['factor']:g}x)"
    elif "promoted_from" in attrs:
        label += f" (promotion of trial {attrs['promoted_from']})"
    return f"{head}{label} {how}: {', '.join(parts)}"


def front(rows: Sequence[TrialRow], cost: str = "macs", *,
          full_budget_only: bool = True) -> list[TrialRow]:
    """The rows with their non-dominated `rank` (0 = front) on (score up, cost down).

    Args:
        rows: from `trial_rows`.
        cost: "macs", "params" or "latency_ms".
        full_budget_only: compare only trials trained for the full proxy budget (a trial
            stopped at a rung has a lower, incomparable score).

    Returns:
        The compared rows, each with `rank`, sorted by rank then cost.
    """
    rows = [r for r in rows if r.get(cost) is not None and r.state == "complete"
            and (not full_budget_only or r.full_budget)]
    if not rows:
        return []
    values = np.array([[r.score, r.get(cost)] for r in rows], dtype=float)
    ranks = nondominated_ranks(values, (MAXIMIZE, MINIMIZE))
    ranked = [dataclasses.replace(r, rank=int(k)) for r, k in zip(rows, ranks, strict=True)]
    return sorted(ranked, key=lambda r: (r.rank, r.get(cost), r.trial))


def pick(rows: Sequence[TrialRow], how: str, cost: str = "macs") -> TrialRow:
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
            if row.trial == number:
                return row
        raise UserError(f"trial {number} has no trained result in this study (trained: "
                        f"{', '.join(str(r.trial) for r in rows) or 'none'})")
    ranked = front(rows, cost)
    if not ranked:
        raise UserError("the study has no trial trained for the full budget yet")
    on_front = [r for r in ranked if r.rank == 0]
    if how == "best":
        return max(on_front, key=lambda r: (r.score, -r.get(cost)))
    # All full-budget rows, not just the front: a front of two is judged against their spread.
    values = np.array([[r.score, r.get(cost)] for r in ranked], dtype=float)
    return ranked[knee(values, (MAXIMIZE, MINIMIZE))]


def provenance(study: optuna.Study, row: TrialRow, location: str) -> dict[str, Any]:
    """Where an exported result came from: enough to reproduce or distrust it.

    Args:
        location: where the study lives, without credentials (`storage.public_location`).
    """
    config = study_config(study)
    proxy = config["proxy"]
    out = {
        "study": study.study_name, "storage": location, "trial": row.trial,
        "search": config["kind"], "objective": config["objective"],
        "selection_metric": row.metric, "score": row.score, "val_top1": row.val_top1,
        "dataset": proxy["dataset"], "split_seed": proxy["split_seed"],
        "proxy_budget": {"epochs": row.budget, "of": row.max_budget,
                         "batch_size": proxy["batch_size"], "fraction": proxy["fraction"],
                         "optimizer": proxy["optimizer"]},
        "seed": row.seed, "device": row.device, "realized_macs": row.macs,
        "params": row.params, "arch": row.arch, "resolution": row.resolution,
    }
    return out | kinds.from_stored(config).provenance(row, config)


def export(study: optuna.Study, row: TrialRow, path: str | Path, location: str,
           extra: dict[str, Any] | None = None) -> Path:
    """Writes the picked result as its search kind exports it (coefficients with their
    family, or an arch file), with its provenance (and `extra`, e.g. how it was picked)."""
    config = study_config(study)
    return kinds.from_stored(config).export(
        row, Path(path), provenance(study, row, location) | (extra or {}))
