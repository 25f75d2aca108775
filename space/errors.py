"""The one exception type for mistakes a user can fix (bad spec, string, coefficients, file).

The CLI prints these as a single line and exits 2; anything else is a bug and keeps its
traceback. `trainers` and `search` raise it too, so there is one place to catch.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


class UserError(ValueError):
    """Invalid input from the user; the message names what is wrong and how to fix it."""


def read_json_file(path: Path, what: str, error: type[UserError]) -> Any:
    """The parsed content of a JSON file, or `error` saying it is missing or not JSON."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise error(f"{what} file not found: {path}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise error(f"{what} file {path} is not valid JSON ({e})") from None
