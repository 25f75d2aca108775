"""The scale ladder: confirm a coefficient search's best directions at the costs users reuse.

A ranking at 2x the baseline's cost need not hold at 8x (ResNet-RS, Bello et al. 2021; Dollar
et al. 2021). The ladder retrains the study's top-K distinct directions at matched larger cost
factors (each direction's phi found as in the search, `space.family.match_phi`), with several
seeds, beside the paper's direction and the single-dimension controls, and records each
(factor, direction) as mean and standard deviation over seeds. `export` then defaults to the
search's direction that is best by mean validation score at the largest factor.

Each row (a direction at a factor, all its seeds) is a unit of work that one worker of any
host claims and stores in a trial of its own (ladder_claims.py), so many hosts share a ladder
and a killed one resumes where it stopped; once every row is in, the ladder is stored in the
study (user attr `effsearch.ladder`), where `front`, `export` and the dashboard read it.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from typing import Any

import optuna

from search import factor_rungs, kinds, ladder_claims
from search.comparison import Method, run_comparison, single_dimension_methods
from search.kinds import CoefficientSearch
from search.records import TrialRow, study_config, trial_rows
from space import PAPER, Coefficients, UserError
from trainers.config import ProxyConfig

LADDER_ATTR = "effsearch.ladder"


def top_directions(rows: Sequence[TrialRow], top: int,
                   factor: float | None = None) -> list[TrialRow]:
    """The `top` best full-budget trials by score, one per distinct network; with `factor`,
    among those trained at that factor (a study with factor rungs)."""
    ranked = sorted((r for r in rows if r.state == "complete" and r.full_budget
                     and (factor is None or r.factor == factor)),
                    key=lambda r: (-r.score, r.trial))
    unique: dict[str, TrialRow] = {}
    for row in ranked:
        unique.setdefault(row.arch, row)
    return list(unique.values())[:top]


def methods(search: CoefficientSearch, candidates: Sequence[TrialRow], *,
            references: bool = True) -> list[tuple[Method, dict[str, Any]]]:
    """The ladder's directions: the candidates (by trial), then (if `references`) the
    references not among them.

    Returns:
        (method, what the row records of it: role, trial, reference).
    """
    out: list[tuple[Method, dict[str, Any]]] = []
    for row in candidates:
        label = f"trial {row.trial}" + (f" [{row.reference}]" if row.reference else "")
        coeffs = Coefficients(*row.triple, target=search.target)
        out.append((Method(label, "compound", coeffs),
                    {"role": "candidate", "trial": row.trial, "reference": row.reference}))
    present = {row.reference for row in candidates}
    if not references:
        return out
    if "paper" in search.references and "paper" not in present:
        out.append((Method("paper", "compound", PAPER),
                    {"role": "reference", "trial": None, "reference": "paper"}))
    if "controls" in search.references:
        for method in single_dimension_methods():
            label = f"{method.kind}-only"
            if method.kind in search.dimensions and label not in present:
                out.append((method, {"role": "reference", "trial": None, "reference": label}))
    return out


def load(study: optuna.Study) -> dict[str, Any] | None:
    """The study's recorded ladder, or None. Its `tolerance` is the search's (ladders recorded
    before it was stored get it from the study's config)."""
    text = study.user_attrs.get(LADDER_ATTR)
    if not text:
        return None
    record = json.loads(text)
    record.setdefault("tolerance", study_config(study)["search"]["tolerance"])
    return record


def run_ladder(study: optuna.Study, *, factors: Sequence[float], top: int, seeds: int,
               epochs: int | None = None, references: bool = True,
               on_trained: Callable[[Any, int, Any], None] | None = None,
               reuse: Any = None) -> dict[str, Any]:
    """Retrains the study's top directions and the references at each factor, `seeds` seeds.

    Args:
        factors: cost factors over the study's baseline, matched on the study's `match`
            cost (MACs if it was not matched).
        top: how many of the search's best distinct directions to confirm.
        seeds: training seeds per (factor, direction): the proxy's seed and the next ones.
        epochs: the proxy's budget if None.
        references: also train the paper's direction and the single-dimension controls (off:
            e.g. when another study on the same baseline and seeds has them).
        on_trained: called with (spec, seed, result) after each training.
        reuse: a direction table (`search.replay.Table`) trained with the study's recipe:
            the (network, seed) trainings it holds are its rows, not trained again.

    Returns:
        {factors, seeds, top, epochs, metric, cost, tolerance, rows}: one row per (factor,
        direction),
        as `search.comparison.compare` writes them, with role ("candidate" or "reference"),
        trial and reference; also stored in the study.

    Raises:
        UserError: not a coefficient search, no full-budget trial, or a recorded ladder with
            other seeds or epochs (its rows would not compare).
    """
    config = study_config(study)
    search = kinds.from_stored(config)
    if not isinstance(search, CoefficientSearch):
        raise UserError(f"the scale ladder retrains coefficient directions; study "
                        f"'{study.study_name}' is a {search.name} search")
    if top < 1 or seeds < 1 or not factors:
        raise UserError("the ladder needs --top >= 1, --seeds >= 1 and at least one factor")
    rows = trial_rows(study)
    # With factor rungs, the directions that reached the largest factor are the candidates.
    candidates = top_directions(rows, top, factor_rungs.largest_reached(rows))
    if not candidates:
        raise UserError(f"study '{study.study_name}' has no trial trained for the full budget")
    proxy = ProxyConfig(**config["proxy"])
    if epochs is not None:
        proxy = dataclasses.replace(proxy, epochs=epochs)
    seed_list = [proxy.seed + i for i in range(seeds)]
    metric = config["objective"]["metric"]
    record = load(study) or {}
    if record and (record["seeds"] != seed_list or record["epochs"] != proxy.epochs):
        raise UserError(f"study '{study.study_name}' has a ladder with seeds {record['seeds']} "
                        f"and {record['epochs']} epochs; rerun it with the same --seeds and "
                        f"--epochs (or delete the study's {LADDER_ATTR} attr)")
    record = {"factors": sorted({*record.get("factors", []), *map(float, factors)}),
              "seeds": seed_list, "top": max(top, record.get("top", 0)),
              "epochs": proxy.epochs, "metric": metric, "cost": search.match or "macs",
              "tolerance": search.tolerance, "rows": record.get("rows", [])}
    # The search's own full-budget trainings are trainings of this recipe too (with its seed,
    # the first of the ladder's): with factor rungs, the confirmation's first seed.
    same_budget = proxy.epochs == config["proxy"]["epochs"]
    own = factor_rungs.own_trainings(study.get_trials(deepcopy=False)) if same_budget else None
    table = reuse.recorded(proxy) if reuse is not None else None

    def recorded(arch: str, seed: int) -> Any:
        return (own(arch, seed) if own else None) or (table(arch, seed) if table else None)
    chosen = methods(search, candidates, references=references)
    done = {(r["factor"], r["method"]) for r in record["rows"]}
    todo = {f"{factor:g}x {method.name}": (factor, method, info)
            for factor in map(float, factors) for method, info in chosen
            if (factor, method.name) not in done}
    data: list[Any] = []  # loaded by the first row this worker trains

    def train(key: str) -> dict[str, Any]:
        from trainers.proxy import load_proxy_dataset

        factor, method, info = todo[key]
        data[:] = data or [load_proxy_dataset(proxy)]
        (row,) = run_comparison(proxy, search.baseline, [method], [factor], seed_list,
                                resolution_multiple=search.resolution_multiple,
                                channel_divisor=search.channel_divisor, on_trained=on_trained,
                                reuse=recorded, cost_key=record["cost"], metrics=(metric,),
                                dataset=data[0])["rows"]
        return row | info

    # Each row is claimed by one worker of any host (ladder_claims.py) and stored in its own
    # trial; the study's attribute is written once every row is in, by every worker alike.
    trained = ladder_claims.work(study, list(todo), train,
                                 settings={"seeds": seed_list, "epochs": proxy.epochs},
                                 heartbeat_s=config.get("heartbeat_s", 10.0),
                                 grace_s=config.get("grace_s", 120.0),
                                 max_retries=config.get("max_retries", 2))
    record["rows"] += [trained[key] for key in todo]
    study.set_user_attr(LADDER_ATTR, json.dumps(record))
    return record


def match_error(row: dict[str, Any], record: dict[str, Any]) -> float:
    """How far a row's realized (matched) cost is from its factor, relative."""
    ratio = row.get("match_ratio", row["macs_ratio"] if record["cost"] == "macs" else None)
    return ratio / row["factor"] - 1 if ratio is not None else 0.0


def best_candidate(record: dict[str, Any]) -> dict[str, Any]:
    """The search's direction best by mean validation metric at the largest factor, among
    those whose member there is within the ladder's tolerance of the factor (a direction whose
    rounding lands it 20% over the cost would win by spending more); all of them if none is."""
    largest = max(record["factors"])
    rows = [r for r in record["rows"] if r["factor"] == largest and r["role"] == "candidate"]
    if not rows:
        raise UserError(f"the ladder has no candidate trained at {largest:g}x")
    fair = [r for r in rows if abs(match_error(r, record)) <= record["tolerance"]] or rows
    metric = record["metric"]
    return max(fair, key=lambda r: (r[f"{metric}_mean"], -r[f"{metric}_std"], -r["trial"]))


def contrasts(record: dict[str, Any], metric: str = "test_top1") -> list[dict[str, Any]]:
    """At each factor, the exported direction (`best_candidate`) against the paper's and
    against the best single dimension there (the question of the paper's Table 3: does
    compound scaling beat scaling one dimension by more than the seeds' noise?).

    Each contrast: the difference of the two mean `metric`s over the ladder's n seeds, its
    standard error sqrt((s1^2 + s2^2) / n), the difference in standard errors (`z`) and
    Welch's two-sided p (with 3 seeds about 4 degrees of freedom: 2 SE is not 5%). The best
    single dimension is chosen by the ladder's own metric (validation), as the exported
    direction is, so that the test scores compared did not choose either. Empty while the
    ladder has no candidate at its largest factor; `z` and `p` are None without seed spread
    or with a failed training.
    """
    from scipy import stats

    try:
        exported = best_candidate(record)["method"]
    except UserError:
        return []
    n = len(record["seeds"])
    chooser = f"{record['metric']}_mean"
    singles = {f"{d}-only" for d in ("depth", "width", "resolution")}
    out = []
    for factor in record["factors"]:
        here = [r for r in record["rows"] if r["factor"] == factor]
        mine = next((r for r in here if r["method"] == exported), None)
        if mine is None:
            continue
        single = max((r for r in here if r.get("reference") in singles),
                     key=lambda r: r[chooser], default=None)
        paper = next((r for r in here if r.get("reference") == "paper"), None)
        for name, other in (("paper", paper), ("best single dimension", single)):
            if other is None or other is mine:
                continue
            (m1, s1), (m2, s2) = ((r[f"{metric}_mean"], r[f"{metric}_std"]) for r in (mine, other))
            se = ((s1**2 + s2**2) / n) ** 0.5
            z = p = None
            if se > 0 and math.isfinite(se) and math.isfinite(m1 - m2):
                z = (m1 - m2) / se
                p = float(stats.ttest_ind_from_stats(m1, s1, n, m2, s2, n, equal_var=False)[1])
            out.append({"factor": factor, "direction": exported, "against": name,
                        "method": other["method"], "metric": metric, "difference": m1 - m2,
                        "se": se, "z": z, "p": p})
    return out


def summary(record: dict[str, Any]) -> dict[str, Any]:
    """What an export's provenance says of the ladder: settings and every row's numbers."""
    keys = ("factor", "method", "role", "trial", "reference", "parameter", "macs_ratio",
            "match_ratio", "resolution", "macs", "params")
    metric = record["metric"]
    stats = [f"{m}_{s}" for m in dict.fromkeys((metric, "test_top1")) for s in ("mean", "std")]
    return {k: record[k] for k in ("factors", "seeds", "epochs", "metric", "cost",
                                   "tolerance")} | {
        "rows": [{k: r.get(k) for k in (*keys, *stats)} for r in record["rows"]]}
