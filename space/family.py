"""A compound-scaled family: as a table, its largest member within a budget, and its member
at a matched cost."""

from __future__ import annotations

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

    Rounding makes realized cost a step function of phi, so no root finder applies; phi is
    scanned on a fine linear grid up to three times the ideal log(factor) / log(target) (the
    analytic cost model takes ~50 us a member), and of the run of grid points that give the
    closest network the middle one is returned, so that re-scaling at that phi rebuilds it
    away from any rounding edge.

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
    upper = 3 * target / math.log(coeffs.target) + 0.5
    best_gap, best_value, run, previous = math.inf, None, [], None
    for phi in np.linspace(0.0, upper, steps):
        try:
            spec = scale(baseline, coeffs, float(phi), resolution_multiple=resolution_multiple,
                         channel_divisor=channel_divisor)
        except UserError:  # past a physical bound (512 blocks a stage, ...)
            break
        value = getattr(cost(spec), cost_key)
        if value > 3 * factor * base:  # cost only grows with phi from here
            break
        gap = abs(math.log(value / base) - target)
        if value == best_value == previous:
            run.append(float(phi))
        elif gap < best_gap - 1e-12:
            best_gap, best_value, run = gap, value, [float(phi)]
        previous = value
    for phi in (run[len(run) // 2], run[0]):  # the first point of the run gave it for sure
        spec = scale(baseline, coeffs, phi, resolution_multiple=resolution_multiple,
                     channel_divisor=channel_divisor)
        if getattr(cost(spec), cost_key) == best_value:
            break
    return spec, phi, best_value / base
