"""Analytic cost of an MBConv network from its spec alone: MACs, params, activations.

Counting follows pycls (`pycls/models/blocks.py` *_cx functions, Dollár et al. 2021), so the
numbers are directly comparable with its published goldens: MACs are multiply-adds of convs
and the classifier (plus one add per bias output, as pycls counts), elementwise ops, BatchNorm
and pooling are free; params are trainable weights (BatchNorm scale and bias included, running
statistics not); activations are the output elements of every conv and linear layer.
Spatial sizes use SAME padding: out = ceil(in / stride).

Written as plain integer arithmetic over the spec (no tracing, no model) so the search can
rank tens of thousands of candidates per second and reject over-budget ones before training.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import NamedTuple

from space.spec import ArchSpec


class Cost(NamedTuple):
    """Total cost of a network (or of one part of it)."""

    macs: int
    params: int
    activations: int


class PartCost(NamedTuple):
    """Cost of one part of the network: the stem, one MBConv block, or the head."""

    name: str
    in_size: int
    out_size: int
    in_channels: int
    out_channels: int
    macs: int
    params: int
    activations: int


def _conv(size: int, c_in: int, c_out: int, k: int, groups: int = 1,
          bias: bool = False) -> tuple[int, int, int]:
    """(macs, params, acts) of a conv whose output is size x size."""
    weights = k * k * c_in * c_out // groups
    b = c_out if bias else 0
    return weights * size * size + b, weights + b, c_out * size * size


def _parts(spec: ArchSpec) -> Iterator[tuple]:
    """Yields (name, in_size, out_size, c_in, c_out, macs, params, acts) per part.

    Plain tuples and inlined arithmetic: this is the search's inner loop.
    """
    size_in, size = spec.resolution, -(-spec.resolution // 2)
    macs, params, acts = _conv(size, spec.in_channels, spec.stem_channels, 3)
    yield ("stem", size_in, size, spec.in_channels, spec.stem_channels, macs,
           params + 2 * spec.stem_channels, acts)

    c_in, idx = spec.stem_channels, 0
    for stage in spec.stages:
        k2, c_out = stage.kernel * stage.kernel, stage.out_channels
        for r in range(stage.repeats):
            out = -(-size // stage.stride) if r == 0 else size
            c_mid = stage.expanded(c_in)
            area_in, area = size * size, out * out
            macs = c_mid * (k2 + c_out) * area
            params = c_mid * (k2 + c_out) + 2 * c_mid + 2 * c_out
            acts = (c_mid + c_out) * area  # depthwise + projection outputs
            if stage.expansion != 1:  # 1x1 expansion conv + BN
                macs += c_in * c_mid * area_in
                params += c_in * c_mid + 2 * c_mid
                acts += c_mid * area_in
            c_se = stage.se_channels(c_in)
            if c_se:  # two 1x1 convs with bias on the pooled vector
                macs += 2 * c_mid * c_se + c_se + c_mid
                params += 2 * c_mid * c_se + c_se + c_mid
                acts += c_se + c_mid
            yield (f"block{idx}", size, out, c_in, c_out, macs, params, acts)
            size, c_in, idx = out, c_out, idx + 1

    macs, params, acts = _conv(size, c_in, spec.head_channels, 1)
    params += 2 * spec.head_channels
    m, p, a = _conv(1, spec.head_channels, spec.num_classes, 1, bias=True)
    yield ("head", size, 1, c_in, spec.num_classes, macs + m, params + p, acts + a)


def cost(spec: ArchSpec) -> Cost:
    """Total MACs, trainable params and activations of `spec` at `spec.resolution`.

    Example:
        >>> from space import get_model_spec
        >>> cost(get_model_spec("efficientnet-b0")).params
        5288548
    """
    macs = params = acts = 0
    for part in _parts(spec):
        macs += part[5]
        params += part[6]
        acts += part[7]
    return Cost(macs, params, acts)


def cost_breakdown(spec: ArchSpec) -> list[PartCost]:
    """Per-part costs (stem, every MBConv block, head with classifier); they sum to `cost`."""
    return [PartCost(*part) for part in _parts(spec)]


def batchnorm_statistics(spec: ArchSpec) -> int:
    """Non-trainable BatchNorm running mean/var entries (Keras counts them in its totals)."""
    total = spec.stem_channels + spec.head_channels
    for _, c_in, _, stage in spec.blocks():
        c_mid = stage.expanded(c_in)
        total += (c_mid if stage.expansion != 1 else 0) + c_mid + stage.out_channels
    return 2 * total
