"""Dataset files and formats: JSONL, CSV and Parquet rows in the shapes trainers take.

Three formats, registered by name in :data:`FORMATS`:

- ``chat``: ``{"messages": [{"role": ..., "content": ...}, ...]}``
- ``prompt-completion``: ``{"prompt": ..., "completion": ...}`` (strings, or message lists)
- ``preference``: ``{"prompt": ..., "chosen": ..., "rejected": ...}`` (strings, or message lists)

Rows are read one at a time with their 1-based row number (the line of a JSONL file, the record of
a CSV file after its header, the row of a Parquet file), so every problem can be reported where it
is. A row that cannot be read at all (invalid UTF-8, invalid JSON) is yielded as a
:class:`BadRow` instead of stopping the read.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from llmops import _jsonsafe as jsonsafe
from llmops._plugins import Registry
from llmops.errors import DatasetError

__all__ = [
    "FORMATS",
    "ROLES",
    "BadRow",
    "DatasetFormat",
    "Row",
    "check_row",
    "dataset_text",
    "read_rows",
]

DatasetFormat = Literal["chat", "prompt-completion", "preference"]
ROLES = ("system", "user", "assistant", "tool")

FORMATS: Registry[tuple[str, ...]] = Registry("dataset format")
"""Each format and the fields its rows need."""
FORMATS.register("chat", ("messages",))
FORMATS.register("prompt-completion", ("prompt", "completion"))
FORMATS.register("preference", ("prompt", "chosen", "rejected"))

_SUFFIXES = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}


@dataclass(frozen=True, slots=True)
class Row:
    """A row read from a dataset file."""

    number: int
    data: dict[str, Any]


@dataclass(frozen=True, slots=True)
class BadRow:
    """A row that could not be decoded: ``check`` is ``invalid_utf8`` or ``invalid_json``."""

    number: int
    check: str
    message: str


def _kind(path: Path) -> str:
    kind = _SUFFIXES.get(path.suffix.lower())
    if kind is None:
        raise DatasetError(
            f"{path}: unknown dataset file type {path.suffix!r}",
            hint="use .jsonl, .csv or .parquet",
        )
    return kind


def read_rows(path: str | Path) -> Iterator[Row | BadRow]:
    """Rows of a JSONL, CSV or Parquet file, in order, with row numbers.

    Raises:
        DatasetError: The file is missing or of an unknown type.
    """
    p = Path(path)
    kind = _kind(p)
    if not p.is_file():
        raise DatasetError(f"{p}: no such dataset file", hint="check dataset.path")
    if kind == "jsonl":
        yield from _jsonl_rows(p)
    elif kind == "csv":
        yield from _csv_rows(p)
    else:
        yield from _parquet_rows(p)


def _jsonl_rows(path: Path) -> Iterator[Row | BadRow]:
    with path.open("rb") as f:
        for number, raw in enumerate(f, start=1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield BadRow(number, "invalid_utf8", f"invalid UTF-8 at byte {exc.start}")
                continue
            if not line.strip():
                continue
            try:
                data = jsonsafe.loads(line)
            except json.JSONDecodeError as exc:
                yield BadRow(number, "invalid_json", f"invalid JSON: {exc.msg}")
                continue
            except ValueError as exc:
                yield BadRow(number, "invalid_json", f"invalid JSON: {exc}")
                continue
            if not isinstance(data, dict):
                yield BadRow(number, "invalid_json", f"expected an object, got {_tname(data)}")
                continue
            yield Row(number, data)


def _csv_rows(path: Path) -> Iterator[Row | BadRow]:
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n")  # the header is line 1, so this is the record
        yield BadRow(max(line, 1), "invalid_utf8", f"invalid UTF-8 at byte {exc.start}")
        return
    reader = csv.DictReader(io.StringIO(text, newline=""))
    for number, record in enumerate(reader, start=1):
        data: dict[str, Any] = {}
        for key, value in record.items():
            if key is None:
                continue
            # Message lists travel through CSV as JSON text.
            if isinstance(value, str) and value.lstrip().startswith(("[", "{")):
                try:
                    data[key] = json.loads(value)
                    continue
                except json.JSONDecodeError:
                    pass
            data[key] = value
        yield Row(number, data)


def _parquet_rows(path: Path) -> Iterator[Row | BadRow]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise DatasetError(
            f"{path}: reading Parquet needs pyarrow", hint="pip install 'llmops[train]'"
        ) from None
    try:
        table = pq.ParquetFile(path)
    except Exception as exc:
        raise DatasetError(f"{path}: not a readable Parquet file: {exc}") from None
    number = 0
    for batch in table.iter_batches(batch_size=4096):
        for data in batch.to_pylist():
            number += 1
            yield Row(number, data)


def _tname(value: Any) -> str:
    return "null" if value is None else type(value).__name__


def _message_problem(messages: Any, field: str) -> str | None:
    if not isinstance(messages, list) or not messages:
        return f"'{field}' must be a non-empty list of messages, got {_tname(messages)}"
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            return f"{field}[{i}] must be an object with role and content"
        role = message.get("role")
        if role not in ROLES:
            return f"{field}[{i}].role is {role!r}; expected one of {', '.join(ROLES)}"
        if not isinstance(message.get("content"), str):
            return f"{field}[{i}].content must be a string, got {_tname(message.get('content'))}"
    return None


def check_row(data: dict[str, Any], fmt: str) -> str | None:  # noqa: PLR0911
    """Why a row does not fit ``fmt`` (schema and roles), or None when it does."""
    needed = FORMATS[fmt]
    missing = [f for f in needed if f not in data]
    if missing:
        return f"missing field {', '.join(repr(m) for m in missing)} for format {fmt!r}"
    if fmt == "chat":
        problem = _message_problem(data["messages"], "messages")
        if problem:
            return problem
        if not any(m["role"] == "assistant" for m in data["messages"]):
            return "no assistant turn to learn from"
        return None
    for field in needed:
        value = data[field]
        if isinstance(value, list):
            problem = _message_problem(value, field)
            if problem:
                return problem
        elif not isinstance(value, str):
            return f"'{field}' must be a string or a list of messages, got {_tname(value)}"
    return None


def _texts(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    return [m["content"] for m in value]


def dataset_text(data: dict[str, Any], fmt: str, *, part: Literal["all", "prompt"] = "all") -> str:
    """The text of a valid row, for duplicate checks: every turn, or only what the model is
    given (the prompt, or the non-assistant turns of a chat)."""
    if fmt == "chat":
        turns = data["messages"]
        if part == "prompt":
            turns = [m for m in turns if m["role"] != "assistant"]
        return "\n".join(m["content"] for m in turns)
    fields = ("prompt",) if part == "prompt" else FORMATS[fmt]
    return "\n".join(t for f in fields for t in _texts(data[f]))
