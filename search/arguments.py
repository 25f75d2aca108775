"""Argument types of the command line: each bad value is a one-line usage error (exit 2)
raised while parsing, before a command does any work or writes anything."""

from __future__ import annotations

import argparse
import math
from pathlib import Path
from typing import Any

from space import UserError


def positive(kind: type, minimum: float = 1) -> Any:
    """An argparse type: an int or finite float >= `minimum`, else a one-line usage error."""
    def parse(text: str) -> Any:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(
                f"expected {'an integer' if kind is int else 'a number'}, got '{text}'") from None
        if not math.isfinite(value) or value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum:g}, got '{text}'")
        return value

    return parse


def factors(text: str) -> list[float]:
    """`compare --factors`: comma-separated cost factors, each finite and >= 1."""
    try:
        factors = [float(f) for f in text.split(",")]
    except ValueError:
        factors = []
    if not factors or not all(math.isfinite(f) and f >= 1 for f in factors):
        raise argparse.ArgumentTypeError(f"expected cost factors >= 1 like '4,8', got '{text}'")
    return factors


def output(*suffixes: str) -> Any:
    """An argparse type for a file to write: its folder must exist (checked before any work,
    so a minutes-long command never fails at its last step), and its suffix must fit."""
    def parse(text: str) -> str:
        path = Path(text).expanduser()
        if suffixes and path.suffix not in suffixes:
            raise argparse.ArgumentTypeError(f"'{text}' must end in {' or '.join(suffixes)}")
        if path.is_dir():
            raise argparse.ArgumentTypeError(f"'{text}' is a directory, not a file")
        folder = path.parent
        if not folder.is_dir():
            raise argparse.ArgumentTypeError(f"cannot write '{text}': folder '{folder}' does "
                                             f"not exist")
        return text

    return parse


def correlation_top(top: int) -> None:
    """`validate --top` for a rank correlation: at least 3 points."""
    if top < 3:
        raise UserError(f"--top {top}: {top} point{'s' if top > 1 else ''} cannot measure a "
                        f"rank correlation (a pair is always perfectly ranked one way or the "
                        f"other); use 3 or more")


MAX_PHIS = 101  # a family table longer than this is a typo (0-1000000000), not a request


def parse_phis(text: str) -> list[float]:
    """"0-7" (integer range), "0,0.5,1" (list) or "2" (one value); finite, at most 101."""
    if not isinstance(text, str):  # argparse hands `--phi=--` over as an empty list
        text = ""
    try:
        if "," in text:
            phis = [float(p) for p in text.split(",")]
        elif "-" in text.lstrip("-"):
            lo, hi = text.lstrip("-").split("-", 1)
            start = -int(lo) if text.startswith("-") else int(lo)
            if int(hi) < start:
                raise ValueError
            # Capped before the range is built: `0-1000000000` must not allocate 1e9 floats.
            phis = [float(p) for p in range(start, min(int(hi), start + MAX_PHIS) + 1)]
        else:
            phis = [float(text)]
    except ValueError:
        raise UserError(f"--phi must look like '0-7', '0,0.5,1' or '2', got '{text}'") from None
    bad = [p for p in phis if not math.isfinite(p)]
    if bad:
        raise UserError(f"--phi values must be finite numbers, got {bad[0]} in '{text}'")
    if len(phis) > MAX_PHIS:
        raise UserError(f"--phi '{text}' gives more than {MAX_PHIS} values")
    return phis


