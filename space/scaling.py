"""EfficientNet's scaling rules: channel/depth/resolution rounding and compound scaling.

The rounding follows the official `efficientnet_model.py` (`round_filters`: nearest multiple
of 8, never more than 10% below the exact value; `round_repeats`: ceil), so the named models
B1-B7 come out of the same code as any scaled family. Because rounding inflates cost (ceil on
depth most of all), the *realized* cost ratio is what the search scores, not alpha*beta^2*gamma^2.
"""

from __future__ import annotations

import dataclasses
import math

from space.coefficients import Coefficients
from space.errors import UserError
from space.spec import ArchSpec

DEFAULT_RESOLUTION_MULTIPLE = 8
"""Scaled resolutions are rounded to a multiple of 8 by default. Why 8: the first three
stride-2 convs then keep even feature maps (no ragged SAME padding), and coarser steps mean
fewer distinct input shapes, so XLA's compilation and autotuning caches are reused across
trials (compile time dominates short proxies). The official table is hand-picked (260, 300,
380 are multiples of 4 only); pycls uses 4. At proxy sizes below ~64 px a step of 8 is a >10%
jump, so pass `resolution_multiple=2` or 4 there."""


PROXY_RESOLUTION_MULTIPLE = 2
"""What the searches round scaled resolutions to by default: their proxies train at 14-32 px,
where a step of 8 would be a 25-50% jump; `effsearch compare` uses it too."""


def round_filters(channels: int, width: float, divisor: int = 8) -> int:
    """Width-scales a channel count the official way.

    Nearest multiple of `divisor` (at least `divisor`), bumped up by one divisor if that would
    lose more than 10%. Width 1 returns `channels` unchanged (identical to the official rule
    for every official channel count, which are all multiples of 8, and it keeps a user's
    baseline exactly as written at phi = 0).
    """
    if width == 1:
        return channels
    exact = channels * width
    new = max(divisor, int(exact + divisor / 2) // divisor * divisor)
    if new < 0.9 * exact:
        new += divisor
    return int(new)


def round_repeats(repeats: int, depth: float) -> int:
    """Depth-scales a stage's block count: ceil(depth * repeats), at least 1."""
    if depth == 1:
        return repeats
    # The small epsilon keeps float noise (1.1 * 10 = 11.000000000000002) from adding a block.
    return max(1, math.ceil(depth * repeats - 1e-9))


def round_resolution(resolution: int, factor: float,
                     multiple: int = DEFAULT_RESOLUTION_MULTIPLE) -> int:
    """Scales a resolution and rounds it to the nearest `multiple` (at least `multiple`)."""
    if factor == 1:
        return resolution
    if multiple < 1:
        raise UserError(f"resolution multiple must be >= 1, got {multiple}")
    return max(multiple, int(resolution * factor / multiple + 0.5) * multiple)


def compound(phi: float, alpha: float, beta: float, gamma: float) -> tuple[float, float, float]:
    """The compound-scaling multipliers (d, w, r) = (alpha^phi, beta^phi, gamma^phi)."""
    return alpha**phi, beta**phi, gamma**phi


DEFAULT_CHANNEL_DIVISOR = 8
"""Scaled channel counts are multiples of 8 (the official rule, and what accelerators like).
A proxy-scale baseline with 16-32 channels cannot express a width multiplier below ~1.25 at
that granularity (16 * 1.1 rounds back to 16), so proxy searches may pass a smaller divisor."""


def apply_multipliers(spec: ArchSpec, *, depth: float = 1.0, width: float = 1.0,
                      resolution: int | None = None, dropout: float | None = None,
                      channel_divisor: int = DEFAULT_CHANNEL_DIVISOR) -> ArchSpec:
    """Scales every stage's repeats by `depth` and every width (stem and head too) by `width`.

    This is the official builder's rule; `resolution` and `dropout` replace the baseline's,
    and channels are rounded to multiples of `channel_divisor`.
    """
    if depth <= 0 or width <= 0:
        raise UserError(f"depth and width multipliers must be > 0, got {depth}, {width}")
    if channel_divisor < 1:
        raise UserError(f"channel divisor must be >= 1, got {channel_divisor}")
    stages = tuple(
        dataclasses.replace(s, out_channels=round_filters(s.out_channels, width, channel_divisor),
                            repeats=round_repeats(s.repeats, depth))
        for s in spec.stages)
    return spec.replace(
        stages=stages,
        stem_channels=round_filters(spec.stem_channels, width, channel_divisor),
        head_channels=round_filters(spec.head_channels, width, channel_divisor),
        resolution=spec.resolution if resolution is None else resolution,
        dropout=spec.dropout if dropout is None else dropout)


def scale(baseline: ArchSpec | None, coeffs: Coefficients, phi: float, *,
          resolution_multiple: int | None = None,
          channel_divisor: int | None = None) -> ArchSpec:
    """The phi-th member of the compound-scaled family of `baseline`.

    Coefficients exported by a search carry the family they were found on (baseline and
    rounding), so `scale(None, space.load_coefficients(path), phi)` rebuilds exactly the
    networks of the search; an argument given here overrides the file's.

    Args:
        baseline: the phi = 0 network; None: the coefficients' own `baseline`.
        coeffs: (alpha, beta, gamma), and possibly their family.
        phi: the compound coefficient; 0 returns the baseline itself, negative scales down.
        resolution_multiple: the resolution is rounded to this multiple (None: the
            coefficients', else `DEFAULT_RESOLUTION_MULTIPLE`; see there for why 8).
        channel_divisor: channels are rounded to this multiple (None: the coefficients',
            else `DEFAULT_CHANNEL_DIVISOR`).

    Returns:
        The scaled spec, with rounded channels, repeats and resolution.

    Raises:
        UserError: no baseline, a non-finite phi, or a member past the spec's physical bounds.
    """
    if baseline is None:
        if coeffs.baseline is None:
            raise UserError("no baseline: these coefficients do not carry the network they "
                            "were found on; pass one")
        from space.arch_string import decode

        baseline = decode(coeffs.baseline)
    if not math.isfinite(phi):
        raise UserError(f"phi must be a finite number, got {phi}")
    if phi == 0:
        return baseline
    resolution_multiple = _first(resolution_multiple, coeffs.resolution_multiple,
                                 DEFAULT_RESOLUTION_MULTIPLE)
    channel_divisor = _first(channel_divisor, coeffs.channel_divisor, DEFAULT_CHANNEL_DIVISOR)
    try:
        d, w, r = compound(phi, *coeffs.as_tuple())
    except OverflowError:
        raise UserError(f"phi={phi:g} overflows the multipliers of {coeffs.as_tuple()}") from None
    return apply_multipliers(baseline, depth=d, width=w,
                             resolution=round_resolution(baseline.resolution, r,
                                                         resolution_multiple),
                             channel_divisor=channel_divisor)


def _first(*values: int | None) -> int:
    return next(v for v in values if v is not None)
