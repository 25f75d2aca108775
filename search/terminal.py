"""What the commands print through: a one-line-error argument parser and rich consoles."""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from rich.console import Console
from rich.table import Table

from space.errors import one_line

EXIT_USER_ERROR = 2
EXIT_STOPPED = 1


class Stopped(Exception):
    """A search that stopped short of its budget for a reason the user must act on (every
    training fails alike, the sampler finds nothing new): the command prints the one-line
    reason and exits 1. The study keeps everything; resuming it goes on from where it stopped.
    """


class Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and exit 2), like every other user error."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"{self.prog}: error: {one_line(message)} (see {self.prog} --help)\n")
        sys.exit(EXIT_USER_ERROR)


def console() -> Console:
    # Tables must not be squeezed when piped to a file or a CI log.
    width = None if sys.stdout.isatty() else max(shutil.get_terminal_size().columns, 200)
    return Console(width=width, highlight=False)


def metric_table(title: str, rows: Sequence[tuple[str, Any]]) -> Table:
    """A two-column metric/value table; floats to 4 significant digits."""
    table = Table(title=title)
    table.add_column("metric")
    table.add_column("value", justify="right")
    for key, value in rows:
        table.add_row(key, f"{value:.4g}" if isinstance(value, float) else str(value))
    return table


def print_json(obj: Any) -> None:
    """`obj` as JSON on stdout; NaN and infinities (a failed run's metrics) become null, so
    strict parsers (jq, JSON.parse) read it."""
    sys.stdout.write(json.dumps(_finite(obj), indent=2, allow_nan=False) + "\n")


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def err_console() -> Console:
    """Progress bars and per-trial lines on stderr; lines are not wrapped, so a log file
    holds one line per event."""
    return Console(stderr=True, soft_wrap=True)
