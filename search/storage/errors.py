"""The one error type of the storage layer."""

from __future__ import annotations

from space import UserError


class StorageError(UserError):
    """The storage cannot be opened or does not answer."""
