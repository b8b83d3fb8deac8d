"""Timestamps: everything the registry stores is UTC; these turn stored values back into aware
datetimes, whatever the driver hands over (naive datetimes or text on SQLite, aware datetimes on
PostgreSQL)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

__all__ = ["as_utc", "as_utc_column", "utcnow"]


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC."""
    return datetime.now(UTC)


def as_utc(value: Any) -> datetime:
    """A stored timestamp (SQLite text, a naive or an aware datetime) as an aware UTC datetime.

    Raises:
        TypeError: The value is not a timestamp.
    """
    if isinstance(value, str):
        # Stored as naive UTC text on SQLite. Parsing with an explicit offset is five times
        # faster than parsing and then calling .replace(tzinfo=UTC).
        try:
            return datetime.fromisoformat(value + "+00:00")
        except ValueError:
            value = datetime.fromisoformat(value)
    if not isinstance(value, datetime):
        raise TypeError(f"expected a timestamp, got {type(value).__name__}")
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def as_utc_column(values: Sequence[Any]) -> list[datetime]:
    """:func:`as_utc` over a column, with the common case (SQLite text) inlined."""
    parse = datetime.fromisoformat
    try:
        return [parse(v + "+00:00") for v in values]
    except (TypeError, ValueError):  # driver datetimes (PostgreSQL) or an unusual format
        return [as_utc(v) for v in values]
