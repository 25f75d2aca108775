"""The family file: found coefficients with every member they define, resolved.

A coefficients file (`space.coefficients`) holds alpha, beta, gamma and the family they were
found on (baseline and rounding); rebuilding a member takes effsearch's own rounding. A family
file adds, for each member phi asked for, the network those rules give, spelled out stage by
stage (block kind, repeats, kernel, stride, expansion, input, expanded, output and SE
channels), with its stem, head, resolution and analytic MACs, params and activations, and the
arguments that build it exactly in timm and keras-hub (`builders`), so that another library
(or a person) can build exactly that network without effsearch's rounding code.

    effsearch export STUDY --family 0-7 -o family.json
    effsearch scale --coeffs 1.2,1.1,1.15 --phi 0-7 --family-json family.json

`load_coefficients` reads a family file as coefficients; `load_family` also checks that this
effsearch still builds the recorded members (a newer rounding rule would say so in one line).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from space.arch_string import decode, encode
from space.coefficients import Coefficients, CoefficientsError
from space.cost import cost
from space.errors import UserError
from space.spec import ArchSpec

FAMILY_FORMAT = "effsearch.family"
FAMILY_VERSION = 1


def stage_record(spec: ArchSpec) -> list[dict[str, Any]]:
    """Each stage of `spec`, resolved: what a builder needs to make its blocks exactly."""
    stages, in_channels = [], spec.stem_channels
    for stage in spec.stages:
        later = stage.out_channels  # the input of every block after the first
        stages.append({
            "block": "mbconv" if stage.expansion != 1 else "mbconv-no-expansion",
            "repeats": stage.repeats, "kernel": stage.kernel, "stride": stage.stride,
            "expansion": stage.expansion, "in_channels": in_channels,
            "out_channels": stage.out_channels,
            # The first block's and the later blocks' (their inputs differ).
            "expanded_channels": [stage.expanded(in_channels), stage.expanded(later)],
            "se_ratio": stage.se_ratio,
            "se_channels": [stage.se_channels(in_channels), stage.se_channels(later)],
            "skip": stage.skip})
        in_channels = stage.out_channels
    return stages


def member_record(spec: ArchSpec, phi: float) -> dict[str, Any]:
    """One member of a family: its phi, arch string, stages, costs."""
    total = cost(spec)
    return {"phi": phi, "arch": encode(spec), "resolution": spec.resolution,
            "in_channels": spec.in_channels, "num_classes": spec.num_classes,
            "stem_channels": spec.stem_channels, "head_channels": spec.head_channels,
            "dropout": spec.dropout, "drop_connect_rate": spec.drop_connect_rate,
            "stages": stage_record(spec), "macs": total.macs, "params": total.params,
            "activations": total.activations, "builders": builder_record(spec)}


def builder_record(spec: ArchSpec) -> dict[str, Any]:
    """Each library's arguments that build `spec` exactly (`space.timm_export`,
    `space.keras_hub_export`), or why that library cannot."""
    from space.keras_hub_export import keras_hub_builder_args
    from space.timm_export import timm_builder_args

    builders: dict[str, Any] = {}
    for name, args_of in (("timm", timm_builder_args), ("keras_hub", keras_hub_builder_args)):
        try:
            builders[name] = args_of(spec)
        except UserError as e:
            builders[name] = {"refused": str(e)}
    return builders


def family_record(coeffs: Coefficients, phis: Sequence[float], *,
                  baseline: ArchSpec | None = None, resolution_multiple: int | None = None,
                  channel_divisor: int | None = None,
                  provenance: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The family file's contents: the coefficients, the family they define (baseline and
    rounding: the arguments, else the coefficients' own, else the defaults) and every member
    of `phis` resolved (`member_record`)."""
    from space.scaling import DEFAULT_CHANNEL_DIVISOR, DEFAULT_RESOLUTION_MULTIPLE, scale

    base = baseline or (decode(coeffs.baseline) if coeffs.baseline else None)
    if base is None:
        raise CoefficientsError("a family needs its baseline: these coefficients carry none; "
                                "pass one")
    multiple = resolution_multiple or coeffs.resolution_multiple or DEFAULT_RESOLUTION_MULTIPLE
    divisor = channel_divisor or coeffs.channel_divisor or DEFAULT_CHANNEL_DIVISOR
    members = [member_record(scale(base, coeffs, phi, resolution_multiple=multiple,
                                   channel_divisor=divisor), phi) for phi in phis]
    return {"format": FAMILY_FORMAT, "version": FAMILY_VERSION, "alpha": coeffs.alpha,
            "beta": coeffs.beta, "gamma": coeffs.gamma, "target": coeffs.target,
            "product": coeffs.product, "baseline": encode(base),
            "resolution_multiple": multiple, "channel_divisor": divisor,
            # The rounding rules, named: what `space.scaling.scale` applies.
            "rounding": {"depth": "ceil(d * repeats) per stage, at least 1",
                         "channels": f"nearest multiple of {divisor} to w * channels (at "
                                     f"least {divisor}), one more {divisor} if under 90% of "
                                     f"it; unchanged at w = 1",
                         "resolution": f"nearest multiple of {multiple} to r * resolution",
                         "se": "max(1, int(block input channels * se_ratio))"},
            "members": members, "provenance": dict(provenance or coeffs.provenance or {})}


def save_family(record: Mapping[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(json.dumps(record, indent=1) + "\n")
    return path


def coefficients_of(record: Mapping[str, Any], where: str) -> Coefficients:
    """The coefficients (with their family) a family file's record holds."""
    if record.get("version") != FAMILY_VERSION:
        raise CoefficientsError(f"{where} has family format version {record.get('version')!r};"
                                f" this effsearch reads version {FAMILY_VERSION}")
    missing = [k for k in ("alpha", "beta", "gamma", "baseline", "members") if k not in record]
    if missing:
        raise CoefficientsError(f"{where} lacks {', '.join(missing)}")
    try:
        return Coefficients(record["alpha"], record["beta"], record["gamma"],
                            target=record.get("target", 2.0),
                            provenance=record.get("provenance") or {},
                            baseline=record["baseline"],
                            resolution_multiple=record.get("resolution_multiple"),
                            channel_divisor=record.get("channel_divisor"))
    except CoefficientsError as e:
        raise CoefficientsError(f"{where}: {e}") from None


def load_family(path: str | Path) -> tuple[Coefficients, list[dict[str, Any]]]:
    """A family file's coefficients and members, checked against what this effsearch builds.

    Raises:
        CoefficientsError: not a family file, or a member this effsearch would build
            differently (the rounding changed since the file was written).
    """
    from space.errors import read_json_file
    from space.scaling import scale

    record = read_json_file(Path(path), "family", CoefficientsError)
    if not isinstance(record, dict) or record.get("format") != FAMILY_FORMAT:
        raise CoefficientsError(f"{path} is not an effsearch family file (expected "
                                f"\"format\": \"{FAMILY_FORMAT}\")")
    coeffs = coefficients_of(record, str(path))
    for member in record["members"]:
        built = encode(scale(None, coeffs, member["phi"]))
        if built != member["arch"]:
            raise CoefficientsError(f"{path}: phi={member['phi']:g} records {member['arch']} "
                                    f"but this effsearch builds {built}")
    return coeffs, list(record["members"])
