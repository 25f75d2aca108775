"""A compound-scaled family as a table, and picking its largest member within a budget."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

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


