"""Which search finds the best direction at the factor a user trains at, for how much compute.

Run as `python benchmarks/search_efficiency.py --table T --target-factor 8 --seeds N --json`
(issue 26, part 3). Six methods, each replayed against a direction table with several
factors (search.replay: the real controller, a direction looked up at a factor as the
nearest recorded there), the search built from the table's header with SearchConfig's
defaults (halving on), once per seed:

- "2x": the default search at the table's lowest factor, then export.
- "2x+ladder": the same, then the ladder at every table factor above it up to the target
  (SearchConfig's ladder_top directions and the paper's and single-dimension references,
  ladder_seeds seeds each); the export is the best candidate's mean at the target.
- "factors": the search with factor rungs at the table's factors up to the target
  (search/factor_rungs.py); the export is its best training at the largest factor (the
  confirmation with seeds is not replayed: it would add ladder_seeds - 1 trainings at the
  target per confirmed direction).
- "target-only": the default search at the target factor alone.
- "paper": the paper's 1.2/1.1/1.15, no search.
- "forecast": factor rungs up to the factor below the target, the separable forecast
  (search/forecast.py) at the target over the table's directions there, and one training of
  the forecast's best at the target.

and three of kind "2x" for issue 27's noise-aware decisions (the seed std is the table's
pooled one at the lowest factor, as `effsearch reliability` measures it):
- "2x+noise": the default search at the lowest factor whose final pick gives every
  direction within the noise band of the leader a second seed and picks the best mean
  (`_noise_pick`), judged at the target, where its seeds are not the judge's.
- "2x+band": the default search with noise-aware promotions (`noise_promotions`: halving
  also promotes the results within the noise band of its cutoff).
- "2x+band+noise": both.

and one of kind "factors": "factors+band", the factor rungs whose climbs also send on the
directions within the same noise band of the weakest one sent (`noise_promotions` at a factor
climb): on CIFAR-10 the 2x ranking's top few are within noise of each other, and the plain
rule climbs one.

Compute is MACs x epochs per image summed over every training (search, ladder, forecast
confirmation). Regret is judged at the target on the table's seed means: normalized
((best - its mean) / (best - worst)) and as a share of seeds within one pooled seed standard
error of the best. A search that picks by one training at the target ("factors",
"target-only") is judged on its pick's other seeds, not on the training that chose it; with
a two-seed table that is one seed, noisier than the best's two-seed mean it is compared with,
so `within_se_share_all_seeds` also judges every pick on all of its seeds. The ladder picks
by the table's own seed means at the target, the same rows the judge reads, so its regret is
optimistic: fresh seeds would pick with their own noise.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from scipy import stats

from search.config import SearchConfig
from search.forecast import MIN_FRACTION, check, forecast, spearman
from search.manifold import paper_reference, shares_of
from search.replay import ReplayOutcome, Table, replay_many, replay_tolerance

KINDS = ("2x", "2x+ladder", "factors", "target-only", "paper", "forecast")
# Issue 27's noise-aware decisions, each with the kind it is a variant of.
NOISY = {"2x+noise": "2x", "2x+band": "2x", "2x+band+noise": "2x", "factors+band": "factors"}
# The forecast's threshold on stopped trainings, at its default and around it (0: fit all).
THRESHOLDS = tuple(sorted({0.0, 0.25, MIN_FRACTION, 0.75, 1.0}))


def noise_ceiling(table: Table, factor: float, resamples: int = 1000,
                  seed: int = 0) -> tuple[float, tuple[float, float]] | None:
    """sqrt of the test-retest reliability at `factor` of a ranking by the mean of the
    table's seeds (Spearman-Brown), with a bootstrap 95% interval over networks: the highest
    Spearman a forecast can reach against the table's means. None with one seed."""
    noise = table.reliability(factor)
    if noise is None:
        return None
    seeds = len(noise.seeds)
    scores = np.array([r["scores"] for r in noise.rows])

    def ceiling(rows: np.ndarray) -> float:
        rho = np.mean([stats.spearmanr(rows[:, i], rows[:, j])[0]
                       for i in range(seeds) for j in range(i + 1, seeds)])
        rho = max(float(np.nan_to_num(rho)), 0.0)
        return math.sqrt(seeds * rho / (1 + (seeds - 1) * rho))

    rng = np.random.default_rng(seed)
    draws = [ceiling(scores[rng.integers(len(scores), size=len(scores))])
             for _ in range(resamples)]
    low, high = np.percentile(draws, [2.5, 97.5])
    return math.sqrt(noise.of_mean(seeds)), (float(low), float(high))


def configs(base: SearchConfig, table: Table, target: float,
            factor_eta: int | None = None) -> dict[str, SearchConfig]:
    """The replayed searches: (a) at the lowest factor, (c) with factor rungs up to the
    target, (d) at the target alone, (f) rungs below the target (or (a)'s, if only one)."""
    factors = [f for f in table.factors() if f <= target + 1e-9]
    search, two = base.search, base.search.target
    if factor_eta is not None:
        search = dataclasses.replace(search, factor_eta=factor_eta)

    def with_search(name: str, **changes: Any) -> SearchConfig:
        return dataclasses.replace(base, name=f"replay-{name}",
                                   search=dataclasses.replace(search, **changes))

    out = {"2x": base, "factors": with_search("factors", factors=tuple(factors)),
           "target-only": with_search("target", phi=math.log(target) / math.log(two))}
    below = factors[:-1]
    # With one factor below the target there is nothing to extrapolate from: the forecast
    # falls back to that search's best (`_forecast`).
    out["forecast"] = (with_search("forecast", factors=tuple(below)) if len(below) >= 2
                       else base)
    noise = table.reliability(factors[0])
    # Without a second seed at the lowest factor the band is unknown: the plain search.
    banded = noise is not None and base.halving is not None
    out["2x+band"] = (dataclasses.replace(base, name="replay-band", noise_promotions=True,
                                          noise_std=noise.seed_std) if banded else base)
    out["factors+band"] = (dataclasses.replace(out["factors"], name="replay-factors-band",
                                               noise_promotions=True, noise_std=noise.seed_std)
                           if banded else out["factors"])
    return out


def _ladder(outcome: ReplayOutcome, table: Table, base: SearchConfig, target: float,
            tolerance: float | None) -> tuple[tuple[float, ...] | None, float]:
    """(the ladder's pick, the ladder's compute) after a search at the lowest factor."""
    low = table.factors()[0]
    epochs = base.proxy.epochs
    ranked = sorted((s for s in outcome.scores if math.isclose(s[1], low) and s[3] == epochs),
                    key=lambda s: -s[2])
    top: list[tuple[float, ...]] = []
    for shares, *_ in ranked:
        nearest = table.nearest(shares, target, tolerance).shares
        if nearest not in top:
            top.append(nearest)
        if len(top) == base.ladder_top:
            break
    if not top:
        return None, 0.0
    references = [tuple(shares_of(paper_reference(base.search.target)).values()),
                  (1.0, 0.0, 0.0), (0.0, 1.0, 0.0), (0.0, 0.0, 1.0)]
    compute = 0.0
    for factor in (f for f in table.factors() if low < f <= target + 1e-9):
        for shares in [*top, *references]:
            row = table.nearest(shares, factor, tolerance).rows[0]
            compute += row["macs"] * epochs * base.ladder_seeds
    pick = max(top, key=lambda s: table.nearest(s, target, tolerance).mean)
    return pick, compute


def _noise_pick(outcome: ReplayOutcome, table: Table, base: SearchConfig,
                tolerance: float | None) -> tuple[tuple[float, ...] | None, float, int]:
    """The noise-aware final pick after a search at the lowest factor (issue 27): every
    full-budget direction within the noise band of the leader (1.96 sqrt(2) seed stds: two
    single scores differ by more 5% of the time; the seed std is the table's pooled one at
    that factor, as `effsearch reliability` measures it) gets the table's other seed, and
    the best mean over its seeds is picked. Returns (pick, the extra seeds' compute, how
    many directions got one)."""
    low, epochs = table.factors()[0], base.proxy.epochs
    noise = table.reliability(low)
    full = [(shares, value, seed) for shares, factor, value, budget, seed in outcome.scores
            if math.isclose(factor, low) and budget == epochs]
    if noise is None or not full:
        return outcome.recommended, 0.0, 0
    leader = max(value for _, value, _ in full)
    band = noise.noise_band
    means: dict[tuple[float, ...], float] = {}
    compute = 0.0
    for shares, value, seed in full:
        if leader - value > band:
            continue
        direction = table.nearest(shares, low, tolerance)
        if direction.shares in means:
            continue
        others = [r for r in direction.rows if r["seed"] != seed]
        if not others:  # one seed in the table: nothing to add
            means[direction.shares] = value
            continue
        means[direction.shares] = (value + others[0]["val_top1"]) / 2
        compute += others[0]["macs"] * epochs
    pick = max(means, key=lambda s: means[s])
    return pick, compute, len(means)


def _drawn_seed(outcome: ReplayOutcome, factor: float, epochs: int) -> int | None:
    """The table seed of the training a search recommended at `factor` (its best there)."""
    at = [(value, seed) for shares, f, value, budget, seed in outcome.scores
          if shares == outcome.recommended and math.isclose(f, factor) and budget == epochs]
    return max(at)[1] if at else None


def _judge(table: Table, pick: tuple[float, ...] | None, target: float,
           tolerance: float | None, drawn: int | None = None) -> tuple[float, float]:
    """(normalized regret, gap in val top-1) of `pick` at `target`. `drawn`: the seed of
    the training that chose it there, left out of its mean (its other seeds judge it), so a
    search that picks by one training at the target is not judged on that same training."""
    if pick is None:
        return 1.0, math.inf
    means = [d.mean for d in table.directions(target, tolerance)]
    direction = table.nearest(pick, target, tolerance)
    rows = [r for r in direction.rows if r["seed"] != drawn] or list(direction.rows)
    gap = max(0.0, max(means) - float(np.mean([r["val_top1"] for r in rows])))
    spread = max(means) - min(means)
    return (gap / spread if spread else 0.0), gap


def _forecast(outcome: ReplayOutcome, table: Table, base: SearchConfig, target: float,
              tolerance: float | None, min_fraction: float = MIN_FRACTION
              ) -> tuple[tuple[float, ...] | None, float, float | None]:
    """(the forecast's pick, the compute of confirming it with one training at the target,
    the forecast's Spearman against the table's means at the target); falls back to the
    search's best training at its largest factor (Spearman None) when the fit cannot be made.
    `min_fraction`: the forecast's threshold on stopped trainings (`forecast.usable`)."""
    points = list(outcome.scores)
    directions = table.directions(target, tolerance)
    if check(points, "separable", min_fraction) is not None:
        pick = outcome.recommended
        return pick, (table.nearest(pick, target, tolerance).rows[0]["macs"]
                      * base.proxy.epochs if pick else 0.0), None
    result = forecast(points, target, [d.shares for d in directions], resamples=0,
                      min_fraction=min_fraction)
    rho = spearman(result, [d.shares for d in directions], [d.mean for d in directions])
    pick = result.best
    return pick, table.nearest(pick, target, tolerance).rows[0]["macs"] * base.proxy.epochs, rho


def run(table: Table, base: SearchConfig, target: float, seeds: int,
        jobs: int = 1, factor_eta: int | None = None) -> list[dict[str, Any]]:
    """The rows of the six methods (`KINDS`) and issue 27's four (`NOISY`), `seeds` replays
    each (`factor_eta`: of the factor rungs, CoefficientSearch's default if None)."""
    import optuna

    from trainers.proxy import load_proxy_dataset

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    if not any(math.isclose(f, target) for f in table.factors()):
        raise SystemExit(f"--target-factor {target:g}: the table has rows at "
                         f"{', '.join(f'{f:g}x' for f in table.factors())} only")
    if math.isclose(target, table.factors()[0]):
        raise SystemExit(f"--target-factor {target:g} is the table's lowest factor: give a "
                         f"larger one")
    tolerance = replay_tolerance(base)
    searches = configs(base, table, target, factor_eta)
    dataset = load_proxy_dataset(base.proxy)
    names = list(searches)
    outcomes = list(replay_many([(searches[n], s, 1) for n in names for s in range(seeds)],
                                table, processes=jobs, dataset=dataset))
    by_name = {n: outcomes[i * seeds:(i + 1) * seeds] for i, n in enumerate(names)}
    # (pick, compute, the seed of the training that picked it at the target, or None)
    picks: dict[str, list[tuple[Any, float, int | None]]] = {k: [] for k in (*KINDS, *NOISY)}
    epochs = base.proxy.epochs
    noisy: dict[str, list[int]] = {"2x+noise": [], "2x+band+noise": []}
    rhos: list[float] = []
    paper = tuple(shares_of(paper_reference(base.search.target)).values())
    # The forecast refitted on the same replays at each threshold on stopped trainings (the
    # default's fits are the "forecast" method's): nothing is replayed again.
    fits = {fraction: [_forecast(o, table, base, target, tolerance, fraction)
                       for o in by_name["forecast"]] for fraction in THRESHOLDS}
    for i in range(seeds):
        low = by_name["2x"][i]
        picks["2x"].append((low.recommended, low.compute, None))
        pick, extra = _ladder(low, table, base, target, tolerance)
        picks["2x+ladder"].append((pick, low.compute + extra, None))
        banded = by_name["2x+band"][i]
        picks["2x+band"].append((banded.recommended, banded.compute, None))
        for kind, outcome in (("2x+noise", low), ("2x+band+noise", banded)):
            pick, extra, seconds = _noise_pick(outcome, table, base, tolerance)
            picks[kind].append((pick, outcome.compute + extra, None))
            noisy[kind].append(seconds)
        for kind in ("factors", "factors+band", "target-only"):
            outcome = by_name[kind][i]
            picks[kind].append((outcome.recommended, outcome.compute,
                                _drawn_seed(outcome, target, epochs)))
        picks["paper"].append((paper, 0.0, None))
        pick, extra, rho = fits[MIN_FRACTION][i]
        picks["forecast"].append((pick, by_name["forecast"][i].compute + extra, None))
        if rho is not None:
            rhos.append(rho)
    se = table.pooled_se(target, tolerance)
    # The threshold on stopped trainings (chosen on part of the CIFAR-10 table), judged at
    # other values.
    thresholds = []
    for fraction, at in fits.items():
        gaps = np.array([_judge(table, pick, target, tolerance)[1] for pick, _, _ in at])
        fitted = [rho for _, _, rho in at if rho is not None]
        thresholds.append({"min_fraction": fraction, "fitted": len(fitted),
                           "forecast_spearman": float(np.mean(fitted)) if fitted else None,
                           "within_se_share": float(np.mean(gaps <= se + 1e-12))})
    ceiling = noise_ceiling(table, target)
    rows = []
    for kind in (*KINDS, *NOISY):
        judged = [_judge(table, p, target, tolerance, drawn) for p, _, drawn in picks[kind]]
        # The same picks judged on every seed of the table, the one that picked them included:
        # optimistic for a pick made by a training at the target (its winner's curse), but
        # with the noise of the best's own mean rather than one seed's.
        pooled = np.array([_judge(table, p, target, tolerance)[1] for p, _, _ in picks[kind]])
        regrets = np.array([r for r, _ in judged])
        gaps = np.array([g for _, g in judged])
        compute = np.array([c for _, c, _ in picks[kind]])
        row = {"method": kind, "kind": NOISY.get(kind, kind), "seeds": seeds,
               "target_factor": target,
               "factor_eta": searches["factors"].search.factor_eta,
               "compute_mean": float(compute.mean()),
               "within_se_share": float(np.mean(gaps <= se + 1e-12)),
               "within_se_share_all_seeds": float(np.mean(pooled <= se + 1e-12)),
               "target_regret_mean": float(regrets.mean()),
               "target_regret_se": _se(regrets),
               "target_gap_mean": float(np.mean(gaps[np.isfinite(gaps)]))
               if np.isfinite(gaps).any() else None,
               "pooled_se": se}
        if kind in noisy:  # directions given a second seed at the pick
            row["second_seeds_mean"] = float(np.mean(noisy[kind]))
        if kind == "forecast":
            row |= {"forecast_spearman": float(np.mean(rhos)) if rhos else None,
                    "forecast_fitted": len(rhos),
                    "noise_ceiling": ceiling[0] if ceiling else None,
                    "noise_ceiling_interval": list(ceiling[1]) if ceiling else None,
                    "min_fraction": MIN_FRACTION, "thresholds": thresholds}
        rows.append(row)
    target_only = next(r["compute_mean"] for r in rows if r["kind"] == "target-only")
    for row in rows:
        row["compute_vs_target_only"] = row["compute_mean"] / target_only if target_only \
            else None
    return rows


def _se(values: np.ndarray) -> float:
    return float(values.std(ddof=1) / np.sqrt(len(values))) if len(values) > 1 else 0.0


def markdown(rows: list[dict[str, Any]]) -> str:
    """The rows as a table for experiments/README.md."""
    lines = ["| method | compute (x target-only) | within 1 SE of the best | the same, judged on "
             "all seeds | regret (normalized) | gap (val top-1) |", "|---|---|---|---|---|---|"]
    for r in rows:
        gap = "" if r["target_gap_mean"] is None else f"{r['target_gap_mean']:.4f}"
        lines.append(f"| {r['method']} | {r['compute_vs_target_only']:.2f} | "
                     f"{r['within_se_share']:.0%} | {r['within_se_share_all_seeds']:.0%} | "
                     f"{r['target_regret_mean']:.3f} +- "
                     f"{r['target_regret_se']:.3f} | {gap} |")
    forecast = next(r for r in rows if r["kind"] == "forecast")
    if forecast["forecast_spearman"] is not None:
        ceiling = forecast["noise_ceiling"]
        lines.append(f"\nforecast Spearman at {forecast['target_factor']:g}x: "
                     f"{forecast['forecast_spearman']:.2f} (noise ceiling "
                     f"{'unknown: one seed' if ceiling is None else f'{ceiling:.2f}'})")
    for t in forecast.get("thresholds", []):
        rho = t["forecast_spearman"]
        default = " (the default)" if t["min_fraction"] == forecast["min_fraction"] else ""
        lines.append(f"  trainings stopped before {t['min_fraction']:.0%} of the longest budget "
                     f"left out{default}: "
                     f"Spearman {'-' if rho is None else f'{rho:.2f}'} over {t['fitted']} fits; "
                     f"{t['within_se_share']:.0%} of the picks within 1 SE, those of the "
                     f"replays it cannot fit (the search's best) included")
    return "\n".join(lines)
