"""The arch-string grammar: a timm-like, human-readable, round-tripping encoding of specs.

A *block* (one stage) is `TYPE_key value_key value...`, keys in this canonical order::

    mb_r2_k3_s2_e6_c24_se0.25[_noskip]

    r  repeats (default 1)        k  depthwise kernel (required)
    s  stride 1|2 (required; the official two-digit "s22"/"s11" are accepted too)
    e  expansion, int or float (default 1)
    c  output channels (required; input channels follow from the previous stage)
    se SE ratio vs. block input channels (default 0 = no SE; omitted when 0)
    noskip  disable the identity shortcut

An *architecture* joins items with "-": `stem32`, the blocks in order, then `head1280`,
`res224`, `cls1000`, `drop0.2`, `dc0.2` and `in3` (input channels). Omitted global items take the
`ArchSpec` defaults; `encode` always writes all of them, so its output is canonical and
`encode(decode(s)) == s` holds for every canonical `s`, and `decode(encode(spec)) == spec` for
every spec. Written by hand (not parsed with a grammar library) because the whole grammar is
"split on '-', then '_', then at the first digit", as in the official decoder.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from space.errors import UserError, read_json_file
from space.spec import BLOCK_TYPES, ArchSpec, BlockSpec, SpecError


class ArchStringError(UserError):
    """A malformed arch string; the message names the offending token."""


_NUMBER = re.compile(r"\d+(\.\d+)?")
_BLOCK_KEYS = {"r": "repeats", "k": "kernel", "s": "stride", "e": "expansion",
               "c": "out_channels", "se": "se_ratio"}
_INT_KEYS = {"r", "k", "s", "c"}
_GLOBAL_KEYS = {"stem": "stem_channels", "head": "head_channels", "res": "resolution",
                "cls": "num_classes", "drop": "dropout", "dc": "drop_connect_rate",
                "in": "in_channels"}
_GLOBAL_INT = {"stem", "head", "res", "cls", "in"}
_GLOBAL_ORDER = ("head", "res", "cls", "drop", "dc", "in")  # after the blocks


def _fmt(x: float) -> str:
    """Shortest positional decimal that reads back as the same float; ints without '.0'."""
    if float(x).is_integer():
        return str(int(x))
    return np.format_float_positional(float(x), trim="-")


def _split_token(token: str) -> tuple[str, str]:
    m = re.search(r"\d", token)
    if m is None:
        return token, ""
    return token[: m.start()], token[m.start():]


def _parse_value(key: str, raw: str, token: str, integer: bool) -> int | float:
    if not _NUMBER.fullmatch(raw):
        raise ArchStringError(f"malformed value in token '{token}': expected a number after "
                              f"'{key}'")
    if integer:
        if "." in raw:
            raise ArchStringError(f"token '{token}': '{key}' takes an integer")
        return int(raw)
    return float(raw)


def decode_block(text: str) -> BlockSpec:
    """Parses one block string such as `mb_r2_k3_s2_e6_c24_se0.25` into a `BlockSpec`.

    Raises:
        ArchStringError: for an unknown block type, unknown key, malformed or missing value.
    """
    tokens = text.strip().split("_")
    block_type = tokens[0]
    if block_type not in BLOCK_TYPES:
        raise ArchStringError(f"unknown block type '{block_type}' in '{text}' "
                              f"(known: {', '.join(BLOCK_TYPES)})")
    fields: dict[str, object] = {"skip": True, "block_type": block_type}
    seen: set[str] = set()
    for token in tokens[1:]:
        if token == "noskip":
            fields["skip"] = False
            continue
        key, raw = _split_token(token)
        if key == "i":
            raise ArchStringError(f"token '{token}' in '{text}': input channels are implied "
                                  "by the previous stage; drop the 'i' key")
        if key not in _BLOCK_KEYS:
            raise ArchStringError(f"unknown token '{token}' in block '{text}' "
                                  f"(keys: {', '.join(_BLOCK_KEYS)}, noskip)")
        if key in seen:
            raise ArchStringError(f"key '{key}' given twice in block '{text}'")
        seen.add(key)
        if key == "s" and raw in ("11", "22"):  # the official two-digit stride form
            raw = raw[0]
        fields[_BLOCK_KEYS[key]] = _parse_value(key, raw, token, key in _INT_KEYS)
    for key in ("k", "s", "c"):
        if key not in seen:
            raise ArchStringError(f"block '{text}' is missing '{key}' ({_BLOCK_KEYS[key]})")
    fields.setdefault("repeats", 1)
    fields.setdefault("expansion", 1.0)
    fields.setdefault("se_ratio", 0.0)
    try:
        return BlockSpec(**fields)  # type: ignore[arg-type]
    except SpecError as e:
        raise ArchStringError(f"block '{text}': {e}") from None


def encode_block(block: BlockSpec) -> str:
    """The canonical string of one block (inverse of `decode_block`)."""
    parts = [block.block_type, f"r{block.repeats}", f"k{block.kernel}", f"s{block.stride}",
             f"e{_fmt(block.expansion)}", f"c{block.out_channels}"]
    if block.se_ratio > 0:
        parts.append(f"se{_fmt(block.se_ratio)}")
    if not block.skip:
        parts.append("noskip")
    return "_".join(parts)


def decode(text: str) -> ArchSpec:
    """Parses an architecture string (items joined by "-") into an `ArchSpec`.

    Example:
        >>> decode("stem32-mb_r1_k3_s1_e1_c16_se0.25-head1280-res64-cls10").resolution
        64

    Raises:
        ArchStringError: naming the first bad item or token.
    """
    if not isinstance(text, str) or not text.strip():
        raise ArchStringError("empty arch string")
    stages: list[BlockSpec] = []
    settings: dict[str, int | float] = {}
    for item in text.strip().split("-"):
        if not item:
            raise ArchStringError(f"empty item (a doubled or trailing '-') in '{text}'")
        if "_" in item or item in BLOCK_TYPES:
            stages.append(decode_block(item))
            continue
        key, raw = _split_token(item)
        if key not in _GLOBAL_KEYS:
            raise ArchStringError(f"unknown item '{item}' (expected a block like "
                                  f"'mb_r1_k3_s1_e6_c16' or one of "
                                  f"{', '.join(k + 'N' for k in _GLOBAL_KEYS)})")
        if _GLOBAL_KEYS[key] in settings:
            raise ArchStringError(f"'{key}' given twice in '{text}'")
        settings[_GLOBAL_KEYS[key]] = _parse_value(key, raw, item, key in _GLOBAL_INT)
    if not stages:
        raise ArchStringError(f"arch string '{text}' has no blocks")
    try:
        return ArchSpec(stages=tuple(stages), **settings)  # type: ignore[arg-type]
    except SpecError as e:
        raise ArchStringError(f"'{text}': {e}") from None


def encode(spec: ArchSpec | BlockSpec) -> str:
    """The canonical string of an architecture (or of a single block)."""
    if isinstance(spec, BlockSpec):
        return encode_block(spec)
    items = [f"stem{spec.stem_channels}", *(encode_block(b) for b in spec.stages)]
    for key in _GLOBAL_ORDER:
        items.append(f"{key}{_fmt(getattr(spec, _GLOBAL_KEYS[key]))}")
    return "-".join(items)


ARCH_FILE_FORMAT = "effsearch.arch"


def save_arch(spec: ArchSpec, path: str | Path, provenance: Mapping[str, Any] | None = None
              ) -> Path:
    """Writes an architecture (e.g. a found baseline) as JSON that `load_arch` reads back."""
    path = Path(path)
    path.write_text(json.dumps({"format": ARCH_FILE_FORMAT, "version": 1, "arch": encode(spec),
                                "provenance": dict(provenance or {})}, indent=2) + "\n")
    return path


def load_arch(path: str | Path) -> ArchSpec:
    """Reads an architecture file written by `save_arch` / `effsearch export` of a baseline study.

    Raises:
        ArchStringError: a missing, broken or foreign file, or a bad arch string in it.
    """
    path = Path(path)
    record = read_json_file(path, "architecture", ArchStringError)
    if not isinstance(record, dict) or record.get("format") != ARCH_FILE_FORMAT \
            or not isinstance(record.get("arch"), str):
        raise ArchStringError(f"{path} is not an effsearch architecture file (expected "
                              f"\"format\": \"{ARCH_FILE_FORMAT}\" and an \"arch\" string)")
    try:
        return decode(record["arch"])
    except UserError as e:
        raise ArchStringError(f"{path}: {e}") from None
