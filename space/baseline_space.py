"""The baseline search space: a MnasNet-style factorized space around a seed network, as data.

MnasNet (Tan et al., 2019, §4.1) and EfficientNet-B0's own search choose, per stage, the
kernel size, the expansion ratio, the number of blocks relative to the seed, squeeze-excitation
on or off, and a filter-size multiplier. `BaselineSpace` lists those options; `build` turns one
choice per option into an `ArchSpec`. Sampling lives in `search/` (Optuna); this module only
says what may be chosen, so the space is pure data that configs can print and compare.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from space.errors import UserError
from space.scaling import DEFAULT_CHANNEL_DIVISOR, round_filters
from space.spec import ArchSpec


@dataclasses.dataclass(frozen=True)
class StageChoices:
    """The options of one stage; every tuple must be non-empty.

    Attributes:
        kernels: depthwise kernel sizes.
        expansions: inverted-bottleneck ratios.
        repeat_deltas: blocks added to the seed stage's repeats (result at least 1).
        se_ratios: squeeze-excitation ratios (0 = off).
        widths: multipliers on the seed stage's output channels (rounded the official way).
    """

    kernels: tuple[int, ...] = (3, 5)
    expansions: tuple[float, ...] = (1, 3, 6)
    repeat_deltas: tuple[int, ...] = (-1, 0, 1)
    se_ratios: tuple[float, ...] = (0.0, 0.25)
    widths: tuple[float, ...] = (0.75, 1.0, 1.25)

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            options = tuple(getattr(self, field.name))
            if not options:
                raise UserError(f"baseline space: {field.name} needs at least one option")
            if len(set(options)) != len(options):
                raise UserError(f"baseline space: {field.name} has duplicates: {options}")
            object.__setattr__(self, field.name, options)
        bad = [k for k in self.kernels if k < 1 or k % 2 == 0]
        if bad:
            raise UserError(f"baseline space: kernels must be odd and >= 1, got {bad}")
        if min(self.expansions) < 1 or min(self.widths) <= 0:
            raise UserError("baseline space: expansions must be >= 1 and widths > 0")


@dataclasses.dataclass(frozen=True)
class BaselineSpace:
    """Per-stage choices around a seed architecture.

    Stem, head, strides and the run-time settings (resolution, classes, dropout) stay the
    seed's: the baseline search picks the blocks, compound scaling picks the rest later.
    """

    seed: ArchSpec
    stages: tuple[StageChoices, ...]
    channel_divisor: int = DEFAULT_CHANNEL_DIVISOR  # width options round to this multiple

    def __post_init__(self) -> None:
        object.__setattr__(self, "stages", tuple(self.stages))
        if self.channel_divisor < 1:
            raise UserError(f"channel divisor must be >= 1, got {self.channel_divisor}")
        if len(self.stages) != len(self.seed.stages):
            raise UserError(f"baseline space: {len(self.stages)} stage choices for a seed with "
                            f"{len(self.seed.stages)} stages")

    def choices(self) -> dict[str, tuple[Any, ...]]:
        """Every decision as name -> options, e.g. "s2_kernel" -> (3, 5); stages count from 1."""
        out: dict[str, tuple[Any, ...]] = {}
        for i, stage in enumerate(self.stages, start=1):
            for field in dataclasses.fields(stage):
                out[f"s{i}_{_DECISION[field.name]}"] = getattr(stage, field.name)
        return out

    @property
    def size(self) -> int:
        """The number of distinct decision vectors (not all give distinct networks)."""
        n = 1
        for options in self.choices().values():
            n *= len(options)
        return n

    def build(self, values: Mapping[str, Any]) -> ArchSpec:
        """The architecture for one value per decision of `choices()`.

        Raises:
            UserError: if a decision is missing or a value is not among its options.
        """
        choices = self.choices()
        missing = sorted(set(choices) - set(values))
        if missing:
            raise UserError(f"baseline space: no value for {', '.join(missing)}")
        for name, value in values.items():
            if name in choices and value not in choices[name]:
                raise UserError(f"baseline space: {name}={value!r} is not one of "
                                f"{choices[name]}")
        stages = []
        for i, seed_stage in enumerate(self.seed.stages, start=1):
            get = lambda d, i=i: values[f"s{i}_{d}"]  # noqa: E731
            stages.append(dataclasses.replace(
                seed_stage, kernel=int(get("kernel")), expansion=float(get("expansion")),
                repeats=max(1, seed_stage.repeats + int(get("repeats"))),
                se_ratio=float(get("se")),
                out_channels=round_filters(seed_stage.out_channels, float(get("width")),
                                           self.channel_divisor)))
        return self.seed.replace(stages=tuple(stages))

    def seed_values(self) -> dict[str, Any] | None:
        """The decisions that rebuild the seed itself, or None if the seed is not in the space."""
        values: dict[str, Any] = {}
        for i, (stage, seed_stage) in enumerate(zip(self.stages, self.seed.stages,
                                                    strict=True), start=1):
            wanted = {"kernels": seed_stage.kernel, "expansions": seed_stage.expansion,
                      "repeat_deltas": 0, "se_ratios": seed_stage.se_ratio, "widths": 1.0}
            for field, value in wanted.items():
                if value not in getattr(stage, field):
                    return None
                values[f"s{i}_{_DECISION[field]}"] = value
        return values

    def cheapest(self) -> ArchSpec:
        """The lowest-cost member.

        Cost grows with kernel, expansion, repeats and SE, and with each stage's channel count;
        but the width option with the fewest channels is not always the smallest multiplier
        (rounding: 1 channel at width 0.75 becomes `channel_divisor`, at width 1 stays 1).
        """
        values = {name: min(options) for name, options in self.choices().items()}
        for i, (stage, seed_stage) in enumerate(zip(self.stages, self.seed.stages,
                                                    strict=True), start=1):
            channels = [round_filters(seed_stage.out_channels, w, self.channel_divisor)
                        for w in stage.widths]
            values[f"s{i}_width"] = min(zip(channels, stage.widths, strict=True))[1]
        return self.build(values)


_DECISION = {"kernels": "kernel", "expansions": "expansion", "repeat_deltas": "repeats",
             "se_ratios": "se", "widths": "width"}


def mnasnet_space(seed: ArchSpec, choices: StageChoices | None = None, *,
                  channel_divisor: int = DEFAULT_CHANNEL_DIVISOR) -> BaselineSpace:
    """The factorized space of MnasNet §4.1 around `seed`, the same options for every stage.

    Defaults: kernel 3/5, expansion 1/3/6, repeats -1/0/+1, SE 0/0.25, width 0.75/1/1.25
    (MnasNet's filter-size choices); B0 itself is a member. Width options round to multiples
    of `channel_divisor` (the official 8 hides them at 16-32 channels: pass 2 there).
    """
    return BaselineSpace(seed=seed, stages=(choices or StageChoices(),) * len(seed.stages),
                         channel_divisor=channel_divisor)
