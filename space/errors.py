"""The one exception type for mistakes a user can fix (bad spec, string, coefficients, file).

The CLI prints these as a single line and exits 2; anything else is a bug and keeps its
traceback. `trainers` and `search` raise it too, so there is one place to catch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class UserError(ValueError):
    """Invalid input from the user; the message names what is wrong and how to fix it.

    The message is one line (the CLI escapes any line break that user text brought in);
    `details`, if given, is printed below it as it is (e.g. the frames of a user's config
    that raised).
    """

    def __init__(self, message: str, *, details: str = "") -> None:
        super().__init__(message)
        self.details = details


def one_line(message: str) -> str:
    """A message with the line breaks that user text brought in shown as escapes."""
    return message.replace("\r", "\\r").replace("\n", "\\n")


def error_text(prefix: str, error: UserError) -> str:
    """What a command prints for a user error: one line, then the error's details if any."""
    return f"{prefix}: error: {one_line(str(error))}\n" + (
        f"{error.details}\n" if error.details else "")


def read_json_file(path: Path, what: str, error: type[UserError]) -> Any:
    """The parsed content of a JSON file, or `error` saying it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{what} file {path} is not valid JSON ({e})") from None
