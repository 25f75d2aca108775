"""The one exception type for mistakes a user can fix (bad spec, string, coefficients, file).

The CLI prints these as a single line and exits 2; anything else is a bug and keeps its
traceback. `trainers` and `search` raise it too, so there is one place to catch.
"""

from __future__ import annotations


class UserError(ValueError):
    """Invalid input from the user; the message names what is wrong and how to fix it."""
