"""Kinds of search, by the name a study stores: each is a frozen dataclass of its settings
that also knows its trials (design, proposal, cost target, rows, export); see `base.py`.

To add a kind: subclass `SearchKind` in a module here and add it to `KINDS`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from search.kinds.base import Candidate, SearchKind
from search.kinds.baseline import BaselineSearch
from search.kinds.coefficients import CoefficientSearch
from space import UserError

KINDS: dict[str, type[SearchKind]] = {CoefficientSearch.name: CoefficientSearch,
                                      BaselineSearch.name: BaselineSearch}


def from_stored(config: Mapping[str, Any]) -> SearchKind:
    """The search kind of a stored study config (`records.study_config`)."""
    kind = KINDS.get(config.get("kind", ""))
    if kind is None:
        raise UserError(f"unknown search kind {config.get('kind')!r} (known: "
                        f"{', '.join(KINDS)}); was the study made by a newer effsearch?")
    return kind.from_json(config["search"])


__all__ = ["KINDS", "BaselineSearch", "Candidate", "CoefficientSearch", "SearchKind",
           "from_stored"]
