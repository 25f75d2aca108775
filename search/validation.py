"""Proxy fidelity: retrain a study's top trials at a longer budget and compare the rankings.

A short proxy is only useful if it ranks candidates the way a longer training would. This
retrains the top-K (by proxy score, full-budget trials) with the same recipe and seed, and
reports Spearman's rho and Kendall's tau (scipy) between proxy and long-budget scores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import optuna
from scipy import stats

from search.records import TrialRow, study_config, trial_rows
from space import UserError
from trainers.proxy import ProxyConfig, load_proxy_dataset, train_and_evaluate

RELIABLE_RHO = 0.6  # below this, the proxy's order is close to a coin flip for top-K choices
VALIDATION_ATTR = "effsearch.validation"


def validate(study: optuna.Study, *, top: int, epochs: int,
             progress: Callable[[int, int, dict[str, Any]], None] | None = None
             ) -> dict[str, Any]:
    """Retrains the `top` best full-budget trials (distinct networks) for `epochs` epochs.

    Args:
        progress: called after each retraining with (done, total, its row).

    Returns:
        {"rows": [{trial, arch, proxy_score, long_score, ...}], "spearman", "kendall",
        "p_spearman", "p_kendall", "reliable", "warning"}; also stored in the study's user
        attrs so the dashboard and later reports see it.
    """
    if top < 3:  # a pair is always perfectly ranked one way or the other
        raise UserError(f"--top must be >= 3 to measure a rank correlation, got {top}")
    config = study_config(study)
    metric = config["objective"]["metric"]
    rows = [r for r in trial_rows(study) if r.state == "complete" and r.full_budget]
    # One row per distinct network: trials that rounded to the same one would repeat a result.
    unique: dict[str, TrialRow] = {}
    for row in sorted(rows, key=lambda r: -r.score):
        unique.setdefault(row.arch, row)
    rows = list(unique.values())[:top]
    if len(rows) < 3:
        raise UserError(f"need at least 3 distinct networks trained for the full budget to "
                        f"measure a rank correlation, the study has {len(rows)}")
    proxy = ProxyConfig(**config["proxy"])
    if epochs <= proxy.epochs:
        raise UserError(f"--epochs must exceed the proxy budget ({proxy.epochs}), got {epochs}")
    dataset = load_proxy_dataset(proxy)  # once for all retrainings
    out_rows = []
    for i, row in enumerate(rows):
        result = train_and_evaluate(proxy.for_spec(row.arch, epochs=epochs), dataset=dataset)
        out_rows.append({"trial": row.trial, "arch": row.arch, "alpha": row.alpha,
                         "beta": row.beta, "gamma": row.gamma, "macs": row.macs,
                         "proxy_score": row.score, "long_score": getattr(result, metric),
                         "long_status": result.status})
        if progress:
            progress(i + 1, len(rows), out_rows[-1])
    proxy_scores = [r["proxy_score"] for r in out_rows]
    long_scores = [r["long_score"] for r in out_rows]
    rho, p_rho = stats.spearmanr(proxy_scores, long_scores)
    tau, p_tau = stats.kendalltau(proxy_scores, long_scores)
    rho, tau = _finite(rho), _finite(tau)
    reliable = rho is not None and rho >= RELIABLE_RHO
    warning = None if reliable else (
        f"the {proxy.epochs}-epoch proxy does not rank reliably against {epochs} epochs "
        f"(Spearman rho = {rho if rho is None else round(rho, 3)} < {RELIABLE_RHO}): "
        f"lengthen the proxy or use more data before trusting the front")
    report = {"metric": metric, "proxy_epochs": proxy.epochs, "long_epochs": epochs,
              "rows": out_rows, "spearman": rho, "p_spearman": _finite(p_rho),
              "kendall": tau, "p_kendall": _finite(p_tau), "reliable": reliable,
              "warning": warning}
    study.set_user_attr(VALIDATION_ATTR, json.dumps(report))
    return report


def _finite(x: float) -> float | None:
    # Constant scores make the correlation undefined (NaN): report None, not NaN.
    x = float(x)
    return x if x == x else None
