"""A compound-scaled family: as a table, its largest member within a budget, and its member
at a matched cost."""

from __future__ import annotations

import bisect
import functools
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from space.arch_string import encode
from space.coefficients import Coefficients
from space.cost import cost
from space.errors import UserError
from space.scaling import compound, scale
from space.spec import ArchSpec


def family_rows(baseline: ArchSpec | None, coeffs: Coefficients,
                phis: Sequence[float], resolution_multiple: int | None = None,
                channel_divisor: int | None = None) -> list[dict[str, Any]]:
    """One row per phi: multipliers, rounded spec, costs and realized vs ideal cost ratios.

    `baseline`, `resolution_multiple` and `channel_divisor` default to the coefficients'
    family, as in `space.scale`.
    """
    if baseline is None:
        baseline = scale(None, coeffs, 0)
    base = cost(baseline)
    rows = []
    for phi in phis:
        try:
            spec = scale(baseline, coeffs, phi, resolution_multiple=resolution_multiple,
                               channel_divisor=channel_divisor)
        except UserError as e:
            raise UserError(f"phi={phi:g}: {e}") from None
        d, w, r = compound(phi, *coeffs.as_tuple())
        c = cost(spec)
        rows.append({
            "phi": phi, "d": d, "w": w, "r": r, "resolution": spec.resolution,
            "blocks": spec.num_blocks, "macs": c.macs, "params": c.params,
            "activations": c.activations, "macs_ratio": c.macs / base.macs,
            "nominal_ratio": coeffs.product**phi, "ideal_ratio": coeffs.target**phi,
            "arch": encode(spec)})
    return rows


FIT_KEYS = ("macs", "params", "resolution", "latency")


def parse_fit(text: str) -> tuple[str, float]:
    """"macs=2e9" -> ("macs", 2e9); latency is in milliseconds."""
    key, _, value = text.partition("=")
    try:
        budget = float(value)
    except ValueError:
        budget = -1.0
    if key not in FIT_KEYS or not budget > 0:
        raise UserError(f"--fit must be one of {', '.join(k + '=N' for k in FIT_KEYS)} with "
                        f"N > 0, got '{text}'")
    return key, budget


def fit_member(rows: Sequence[dict[str, Any]], key: str, budget: float,
               measure: Any = None) -> dict[str, Any]:
    """The largest family member (highest phi) whose `key` is within `budget`.

    Args:
        rows: from `family_rows`, in any order.
        key: "macs", "params", "resolution", or "latency" (then `measure(row) -> ms` is
            called in increasing phi and stops at the first member over budget, since cost
            grows with phi).
    """
    fitting = None
    for row in sorted(rows, key=lambda r: r["phi"]):
        value = measure(row) if key == "latency" else row[key]
        if key == "latency":
            row["latency_ms"] = value
        if value > budget:
            if key == "latency":
                break
            continue
        fitting = row
    if fitting is None:
        smallest = min(rows, key=lambda r: r["phi"])
        value = smallest.get("latency_ms" if key == "latency" else key)
        raise UserError(f"no family member fits {key} <= {budget:g}; the smallest listed "
                        f"(phi={smallest['phi']:g}) has {key} {value:g}")
    return fitting


MATCHABLE = ("macs", "params", "activations")


def match_phi(baseline: ArchSpec, coeffs: Coefficients, factor: float, *, cost_key: str = "macs",
              resolution_multiple: int | None = None, channel_divisor: int | None = None,
              steps: int = 2000) -> tuple[ArchSpec, float, float]:
    """The family member whose *rounded* network's cost is closest (in log) to `factor` times
    the baseline's, and the phi that gives it.

    Rounding makes realized cost a step function of phi, so no root finder applies; phi lives
    on a fine linear grid up to three times the ideal log(factor) / log(target), and of the
    run of grid points that give the closest network the middle one is returned, so that
    re-scaling at that phi rebuilds it away from any rounding edge. For phi > 0 each rounded
    dimension, hence every cost, is non-decreasing in phi, so the grid is bisected (~40
    members instead of up to `steps`; a search proposes hundreds of directions). phi = 0 is
    the baseline exactly as written, which the rounding of phi > 0 can undercut (17 channels
    at width 1 + eps round to 16), so it is weighed apart, exactly as a left-to-right scan of
    the grid would (tests/test_scaling.py holds that scan as the reference).

    Args:
        cost_key: "macs", "params" or "activations" (params do not grow with resolution, so a
            resolution-only direction cannot match them: its error says so).

    Returns:
        (spec, phi, realized), realized being the member's cost over the baseline's.
    """
    if cost_key not in MATCHABLE:
        raise UserError(f"matched cost must be one of {', '.join(MATCHABLE)}, got {cost_key!r}")
    if not factor >= 1:
        raise UserError(f"cost factor must be >= 1, got {factor}")
    base = getattr(cost(baseline), cost_key)
    target = math.log(factor)
    phis = np.linspace(0.0, 3 * target / math.log(coeffs.target) + 0.5, steps)

    def member(i: int) -> ArchSpec:
        return scale(baseline, coeffs, float(phis[i]), resolution_multiple=resolution_multiple,
                     channel_divisor=channel_divisor)

    @functools.cache
    def value(i: int) -> float:
        """The member's cost; inf past a physical bound (512 blocks a stage, ...) or past
        three times the factor: where a scan would stop."""
        try:
            v = getattr(cost(member(i)), cost_key)
        except UserError:
            return math.inf
        return math.inf if v > 3 * factor * base else v

    def first(threshold: float, *, strict: bool = False) -> int:
        """The first grid index >= 1 whose value reaches `threshold` (exceeds it if strict)."""
        return bisect.bisect_left(range(steps), True, lo=1,
                                  key=lambda i: value(i) > threshold if strict
                                  else value(i) >= threshold)

    def gap(i: int) -> float:
        return abs(math.log(value(i) / base) - target)

    end = first(math.inf)  # grid points 1 .. end-1 are finite and non-decreasing
    above = first(factor * base)
    best = 0  # phi = 0, then the closest below and above the factor, in scan order
    for i in (above - 1, above):
        if 1 <= i < end and gap(i) < gap(best) - 1e-12:
            best = i
    if best == 0:
        run = (0, first(base, strict=True) if value(1) == base else 1)
    else:
        run = (first(value(best)), first(value(best), strict=True))
    for i in (run[0] + (run[1] - run[0]) // 2, run[0]):  # the run's first point gave it
        spec = member(i)
        if getattr(cost(spec), cost_key) == value(best):
            break
    return spec, float(phis[i]), value(best) / base
