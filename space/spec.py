"""Frozen, validated specs for MBConv networks (EfficientNet-B0 style).

A `BlockSpec` describes one *stage*: `repeats` MBConv blocks that share kernel, expansion and
SE ratio; the first carries the stride and the channel change, the rest keep both (official
EfficientNet semantics). An `ArchSpec` is stem + stages + head + the run-time settings that
change cost or behaviour (resolution, classes, dropout, drop-connect). All validation lives in
`__post_init__`, so every spec in the program, however made, is valid.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeGuard

from space.errors import UserError

BLOCK_TYPES = ("mb",)  # MBConv; the grammar is keyed by type so fused blocks can join later.

# Upper bounds that keep every spec a network one could build. They are ~10x past the largest
# published member (EfficientNet-L2: 22 blocks in a stage, 5,504 head channels, 800 px), so no
# real design hits them; without them a typo such as `r100000000` or coefficients like
# (1000, 1, 1) make the cost model walk 1e8 blocks or overflow before anything says no.
MAX_REPEATS = 512
MAX_CHANNELS = 65_536
MAX_KERNEL = 63
MAX_EXPANSION = 64.0
MAX_RESOLUTION = 8_192
MAX_CLASSES = 1_000_000
MAX_IN_CHANNELS = 1_024


class SpecError(UserError):
    """A spec field is out of range; the message names the field."""


def _check(cond: bool, field: str, requirement: str, value: object) -> None:
    if not cond:
        # A runaway multiplier can make a 300-digit integer: one line must stay readable.
        shown = f"{value:.4g}" if _is_int(value) and abs(value) > 10**12 else repr(value)
        raise SpecError(f"{field} must be {requirement}, got {shown}")


def _is_int(x: object) -> TypeGuard[int]:
    return isinstance(x, int) and not isinstance(x, bool)


def _is_real(x: object) -> bool:
    return isinstance(x, int | float) and not isinstance(x, bool) and math.isfinite(x)


@dataclasses.dataclass(frozen=True, slots=True)
class BlockSpec:
    """One stage of identical MBConv blocks.

    Attributes:
        kernel: depthwise kernel size (odd).
        stride: stride of the first block of the stage (1 or 2).
        expansion: inverted-bottleneck ratio; 1 means no expansion conv. Floats allowed.
        out_channels: output channels of every block of the stage.
        se_ratio: squeeze-excitation width relative to the block's *input* channels; 0 = no SE.
        repeats: number of blocks in the stage.
        skip: allow the identity shortcut (used only when stride 1 and in == out).
        block_type: the block family; only "mb" (MBConv) for now.
    """

    kernel: int
    stride: int
    expansion: float
    out_channels: int
    se_ratio: float = 0.0
    repeats: int = 1
    skip: bool = True
    block_type: str = "mb"

    def __post_init__(self) -> None:
        _check(_is_int(self.kernel) and 1 <= self.kernel <= MAX_KERNEL and self.kernel % 2 == 1,
               "kernel", f"an odd integer in [1, {MAX_KERNEL}]", self.kernel)
        _check(_is_int(self.stride) and self.stride in (1, 2), "stride", "1 or 2", self.stride)
        _check(_is_real(self.expansion) and 1 <= self.expansion <= MAX_EXPANSION, "expansion",
               f"in [1, {MAX_EXPANSION:g}]", self.expansion)
        _check(_is_int(self.out_channels) and 1 <= self.out_channels <= MAX_CHANNELS,
               "out_channels", f"an integer in [1, {MAX_CHANNELS}]", self.out_channels)
        _check(_is_real(self.se_ratio) and 0 <= self.se_ratio <= 1, "se_ratio",
               "in [0, 1]", self.se_ratio)
        _check(_is_int(self.repeats) and 1 <= self.repeats <= MAX_REPEATS, "repeats",
               f"an integer in [1, {MAX_REPEATS}]", self.repeats)
        _check(isinstance(self.skip, bool), "skip", "a bool", self.skip)
        _check(self.block_type in BLOCK_TYPES, "block_type", f"one of {BLOCK_TYPES}",
               self.block_type)
        # Normalize numerics so that equal specs compare and hash equal (6 == 6.0 already,
        # but encode() must see one canonical type).
        object.__setattr__(self, "expansion", float(self.expansion))
        object.__setattr__(self, "se_ratio", float(self.se_ratio))

    def expanded(self, in_channels: int) -> int:
        """Channels inside the block: round(in * expansion), exact for integer ratios."""
        return in_channels if self.expansion == 1 else max(1, int(in_channels * self.expansion
                                                                  + 0.5))

    def se_channels(self, in_channels: int) -> int:
        """SE bottleneck width, relative to block input (official: max(1, int(in * ratio)))."""
        return max(1, int(in_channels * self.se_ratio)) if self.se_ratio > 0 else 0


@dataclasses.dataclass(frozen=True, slots=True)
class ArchSpec:
    """A whole MBConv network.

    Attributes:
        stages: the MBConv stages, in order.
        stem_channels: output channels of the stride-2 3x3 stem conv.
        head_channels: channels of the final 1x1 conv before pooling.
        resolution: square input size in pixels.
        num_classes: classifier outputs.
        dropout: dropout rate before the classifier.
        drop_connect_rate: stochastic-depth rate of the *last* block; block i of N gets
            rate * i / N (linear survival schedule), applied on identity blocks only.
        in_channels: input image channels (3 for RGB).
    """

    stages: tuple[BlockSpec, ...]
    stem_channels: int = 32
    head_channels: int = 1280
    resolution: int = 224
    num_classes: int = 1000
    dropout: float = 0.2
    drop_connect_rate: float = 0.2
    in_channels: int = 3

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        _check(len(self.stages) >= 1, "stages", "non-empty", self.stages)
        for i, stage in enumerate(self.stages):
            _check(isinstance(stage, BlockSpec), f"stages[{i}]", "a BlockSpec", stage)
        for name, most in (("stem_channels", MAX_CHANNELS), ("head_channels", MAX_CHANNELS),
                           ("resolution", MAX_RESOLUTION), ("num_classes", MAX_CLASSES),
                           ("in_channels", MAX_IN_CHANNELS)):
            value = getattr(self, name)
            _check(_is_int(value) and 1 <= value <= most, name, f"an integer in [1, {most}]",
                   value)
        for name in ("dropout", "drop_connect_rate"):
            value = getattr(self, name)
            _check(_is_real(value) and 0 <= value < 1, name, "in [0, 1)", value)
            object.__setattr__(self, name, float(value))

    @property
    def num_blocks(self) -> int:
        """Total MBConv blocks (B0: 16)."""
        return sum(s.repeats for s in self.stages)

    def blocks(self) -> list[tuple[int, int, int, BlockSpec]]:
        """Expand stages into blocks: (global index, in_channels, stride, stage spec)."""
        out, in_ch, idx = [], self.stem_channels, 0
        for stage in self.stages:
            for r in range(stage.repeats):
                out.append((idx, in_ch, stage.stride if r == 0 else 1, stage))
                in_ch = stage.out_channels
                idx += 1
        return out

    def replace(self, **changes: Any) -> ArchSpec:
        """A validated copy with some fields changed."""
        return dataclasses.replace(self, **changes)
