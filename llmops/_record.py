"""One record style: frozen or slotted dataclasses (listings build thousands of them; about
1 µs each against 12 µs for a pydantic model) whose JSON form is derived from their fields,
never listed by hand. Persisted and exported forms carry ``format_version`` and the llmops
version (see :func:`versioned`)."""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, ClassVar

__all__ = ["Record", "plain", "versioned"]


def plain(value: Any) -> Any:
    """``value`` as JSON-ready data: datetimes as ISO text, records and dataclasses as dicts."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Record):
        return value.to_json()
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


class Record:
    """JSON from the dataclass fields: ``_json_renames`` maps a field to its JSON key,
    ``_json_computed`` adds properties, ``_json_omit`` leaves fields out."""

    __slots__ = ()
    _json_renames: ClassVar[dict[str, str]] = {}
    _json_computed: ClassVar[tuple[str, ...]] = ()
    _json_omit: ClassVar[frozenset[str]] = frozenset()

    def flat(self) -> dict[str, Any]:
        """One row for DataFrames: the JSON form with nested mappings as dotted columns."""
        from llmops._display import flatten

        return flatten(self.to_json())

    def to_json(self) -> dict[str, Any]:
        """Plain data for ``--json`` output and exports."""
        out = {
            self._json_renames.get(f.name, f.name): plain(getattr(self, f.name))
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if f.name not in self._json_omit
        }
        for name in self._json_computed:
            out[name] = plain(getattr(self, name))
        return out


def versioned(data: dict[str, Any], format_version: int) -> dict[str, Any]:
    """``data`` with ``format_version`` and ``llmops_version`` first."""
    from llmops._version import __version__

    return {"format_version": format_version, "llmops_version": __version__, **data}
