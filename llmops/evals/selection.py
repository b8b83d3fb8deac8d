"""Which cases a run runs: ``--filter`` (a regular expression over a case's id, description and
variables), ``--limit`` (the first N that match) and ``--repeat`` (each case N times, each a
fresh sample rather than a cached copy). The selection is recorded with the run, so a resumed
run runs exactly the cases it started with."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from llmops.errors import InputError
from llmops.evals.suite import NumberedCase

__all__ = ["MAX_REPEAT", "CaseSelection"]

MAX_REPEAT = 1000


@dataclass(frozen=True, slots=True)
class CaseSelection:
    """A run's case filter, limit and repeat count (all cases once by default)."""

    filter: str | None = None
    """Regular expression searched in each case's id, description and JSON variables."""
    limit: int | None = None
    """Run at most this many cases (the first that match the filter)."""
    repeat: int = 1
    """Run each case this many times (as ``id#1``, ``id#2`` ...)."""

    def __post_init__(self) -> None:
        if self.filter is not None:
            try:
                re.compile(self.filter)
            except re.error as exc:
                raise InputError(
                    f"--filter {self.filter!r} is not a regular expression ({exc})",
                    hint="escape special characters with a backslash, e.g. --filter 'capital\\?'",
                ) from None
        if self.limit is not None and self.limit < 1:
            raise InputError(f"--limit must be at least 1, got {self.limit}")
        if not 1 <= self.repeat <= MAX_REPEAT:
            raise InputError(f"--repeat must be from 1 to {MAX_REPEAT}, got {self.repeat}")

    @property
    def everything(self) -> bool:
        """Whether every case runs once (nothing to record)."""
        return self.filter is None and self.limit is None and self.repeat == 1

    def apply(self, items: Iterator[NumberedCase]) -> Iterator[NumberedCase]:
        """The selected cases; with repeats, case ``i`` becomes ``i * repeat + r`` (and its id
        ``id#r``), so every result keeps a number of its own."""
        pattern = re.compile(self.filter) if self.filter is not None else None
        taken = 0
        for item in items:
            if self.limit is not None and taken >= self.limit:
                return
            if pattern is not None and not pattern.search(_haystack(item)):
                continue
            taken += 1
            for r in range(self.repeat):
                case = item.case
                if self.repeat > 1:
                    base = case.id or f"case-{item.index}"
                    case = case.model_copy(update={"id": f"{base}#{r + 1}"})
                yield NumberedCase(item.index * self.repeat + r, case, item.where, sample=r)

    def to_json(self) -> dict[str, Any]:
        """The recorded form."""
        return {"filter": self.filter, "limit": self.limit, "repeat": self.repeat}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> CaseSelection:
        """The recorded form back (a run recorded without one ran everything)."""
        data = data or {}
        return cls(data.get("filter"), data.get("limit"), int(data.get("repeat") or 1))


def _haystack(item: NumberedCase) -> str:
    case = item.case
    text = json.dumps(case.vars, ensure_ascii=False, sort_keys=True, default=str)
    return "\n".join((case.id or "", case.description, text))
