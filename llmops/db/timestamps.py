"""Timestamps: everything the registry stores is UTC; these turn stored values back into aware
datetimes, whatever the driver hands over (naive datetimes or text on SQLite, aware datetimes on
PostgreSQL)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from llmops.errors import InputError

__all__ = ["as_utc", "as_utc_column", "parse_when", "utcnow"]

_AGO = re.compile(r"(\d+(?:\.\d+)?)\s*(m|h|d|w)")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


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


def parse_when(value: datetime | timedelta | str, *, what: str = "time") -> datetime:
    """A point in time for search filters: an aware or naive (UTC) datetime, a timedelta or
    ``"7d"``/``"12h"``/``"30m"``/``"2w"`` (that long ago), or ISO 8601 text.

    Raises:
        InputError: The text is neither.
    """
    if not isinstance(value, timedelta | datetime | str):
        raise TypeError(f"{what} takes a datetime, timedelta or text, not {type(value).__name__}")
    try:
        if isinstance(value, timedelta):
            return utcnow() - value
        if isinstance(value, datetime):
            return as_utc(value).astimezone(UTC)
        text = value.strip()
        ago = _AGO.fullmatch(text)
        if ago is not None:
            return utcnow() - timedelta(**{_UNITS[ago.group(2)]: float(ago.group(1))})
        # Compared with stored UTC: an offset is converted, never dropped.
        return as_utc(datetime.fromisoformat(text)).astimezone(UTC)
    except OverflowError:
        raise InputError(
            f"{what} {value!r} is too far back", hint="give an age under 10,000 years"
        ) from None
    except ValueError:
        raise InputError(
            f"{what} {value!r} is not a time",
            hint="give ISO 8601 (2026-12-01 or 2026-12-01T09:30) or an age such as 7d, 12h, 30m",
        ) from None
