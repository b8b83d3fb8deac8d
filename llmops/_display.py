"""How records look in a notebook and a REPL: short ``repr``s that name what a record is, HTML
tables for Jupyter (``_repr_html_``), and listings that turn into pandas DataFrames.

A record lists the fields worth seeing in ``_repr_fields``; everything else stays one
``to_json()`` away. Values are shortened (a recipe or a summary is never printed whole) and
HTML is escaped (outputs and reasons are model text).
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any, ClassVar, Protocol, TypeVar

__all__ = ["Display", "Flat", "Listing", "flatten", "html_table", "short", "store_repr"]

_MAX_VALUE = 60
_MAX_HTML_ROWS = 50


def short(value: Any, limit: int = _MAX_VALUE) -> str:
    """``value`` as a short, one-line text."""
    if isinstance(value, datetime):
        text = value.strftime("%Y-%m-%d %H:%M:%S")
    elif isinstance(value, float):
        text = f"{value:.4g}"
    elif isinstance(value, str):
        text = " ".join(value.split())
        return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "…")
    else:
        text = repr(value)
        if hasattr(value, "_repr_html_"):  # a record, already short: room for its summary
            limit = max(limit, 240)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


def flatten(data: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested mappings as dotted keys (``{"lora": {"r": 16}}`` -> ``{"lora.r": 16}``); lists
    stay values."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{name}."))
        else:
            out[name] = value
    return out


def html_table(rows: Iterable[Mapping[str, Any]], *, title: str | None = None) -> str:
    """An HTML table of ``rows`` (the union of their keys as columns), escaped, capped at 50
    rows with a note of how many were left out."""
    rows = list(rows)
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(row.get(c)))}</td>" for c in columns) + "</tr>"
        for row in rows[:_MAX_HTML_ROWS]
    )
    more = len(rows) - _MAX_HTML_ROWS
    note = f"<p>… and {more} more (to_pandas() for all)</p>" if more > 0 else ""
    caption = f"<p><b>{html.escape(title)}</b></p>" if title else ""
    return f"{caption}<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, float):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= 200 else text[:199] + "…"


def store_repr(kind: str, count: int, latest: str | None, methods: str) -> str:
    """What a run store holds, for a notebook: ``Runs(3 run(s), latest ...; .list() ...)``."""
    last = f", latest {latest}" if latest else ""
    return f"{kind}({count} run(s){last}; {methods})"


class Display:
    """``repr`` and ``_repr_html_`` from the fields named in ``_repr_fields`` (a dataclass that
    mixes this in says ``repr=False``, so that its generated ``repr`` does not replace it)."""

    __slots__ = ()
    _repr_fields: ClassVar[tuple[str, ...]] = ()

    def _shown(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self._repr_fields}

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={short(v)}" for k, v in self._shown().items() if v is not None)
        return f"{type(self).__name__}({parts})"

    def _repr_html_(self) -> str:
        fields = {k: v for k, v in self._shown().items() if v is not None}
        return html_table(
            [{"field": k, "value": _cell(v)} for k, v in fields.items()],
            title=type(self).__name__,
        )


class Flat(Protocol):
    """A record with a flat, one-row form for DataFrames."""

    def flat(self) -> dict[str, Any]:
        """The record as flat columns (dotted names for nested values)."""
        ...


T = TypeVar("T", bound=Flat)


class Listing(list[T]):
    """A list of records, as returned by ``list()`` and ``search()``: a plain list, plus
    :meth:`to_pandas` and an HTML table in a notebook."""

    def to_pandas(self) -> Any:
        """One row per record with flat columns (``params.lora.r``, ``pass_rate.<target>``).

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        from llmops._extras import require

        require("pandas", feature="to_pandas()")
        import pandas as pd

        return pd.DataFrame([record.flat() for record in self])

    def _repr_html_(self) -> str:
        rows = [{k: v for k, v in r.flat().items() if not k.startswith("params.")} for r in self]
        return html_table(rows, title=f"{len(self)} record(s)")
