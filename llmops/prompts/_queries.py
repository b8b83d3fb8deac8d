"""Prebuilt read statements of the prompt registry.

Building a SQLAlchemy statement costs far more than running it on SQLite (about 1 ms against
10 µs), so the lookups on the hot path (``get``, ``versions``, ``history``) are built once, with
bound parameters, and reused.
"""

from __future__ import annotations

import functools
import gc
import json
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, Literal, TypeAlias

from sqlalchemy import Select, bindparam, select, type_coerce
from sqlalchemy.types import NullType
from sqlmodel import col

from llmops.db.models import AuditEvent, Prompt, PromptLabel, PromptVersionRow

__all__ = [
    "decode_json_column",
    "gc_paused",
    "history_rows",
    "labels_of_prompt",
    "labels_of_version",
    "lookup",
    "prompt_id",
    "version_rows",
]

_pv, _p, _lb = PromptVersionRow, Prompt, PromptLabel
AnySelect: TypeAlias = "Select[*tuple[Any, ...]]"
_RAW = NullType()  # no result processing: the driver's value as is


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector while building many acyclic objects."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def decode_json_column(values: Sequence[Any]) -> list[Any]:
    """Decode raw JSON values (text on SQLite, already decoded by PostgreSQL drivers) in one
    ``json.loads`` call, which is several times faster than one call per value."""
    texts = [v for v in values if isinstance(v, str)]
    if not texts:
        return list(values)
    decoded = iter(json.loads("[" + ",".join(texts) + "]"))
    return [next(decoded) if isinstance(v, str) else v for v in values]


@functools.cache
def lookup(kind: Literal["latest", "version", "label", "digest"]) -> AnySelect:
    """One version with its content; parameters ``name`` plus ``version``/``label``/``digest``."""
    query = select(
        col(_p.name),
        col(_pv.version),
        col(_pv.digest),
        col(_pv.spec),
        col(_pv.message),
        col(_pv.author),
        col(_pv.created_at),
        col(_pv.archived),
        col(_pv.prompt_id),
    ).join(_p, col(_p.id) == col(_pv.prompt_id))
    if kind == "digest":
        return query.where(col(_pv.digest) == bindparam("digest")).order_by(col(_pv.id)).limit(1)
    query = query.where(col(_p.name) == bindparam("name"))
    if kind == "version":
        return query.where(col(_pv.version) == bindparam("version"))
    if kind == "label":
        return query.join(
            _lb, (col(_lb.prompt_id) == col(_pv.prompt_id)) & (col(_lb.version) == col(_pv.version))
        ).where(col(_lb.label) == bindparam("label"))
    return query.where(col(_pv.archived).is_(False)).order_by(col(_pv.version).desc()).limit(1)


@functools.cache
def labels_of_version() -> AnySelect:
    """Labels pointing at one version; parameters ``prompt_id``, ``version``."""
    return (
        select(col(_lb.label))
        .where(col(_lb.prompt_id) == bindparam("prompt_id"))
        .where(col(_lb.version) == bindparam("version"))
        .order_by(col(_lb.label))
    )


@functools.cache
def labels_of_prompt() -> AnySelect:
    """Every label of one prompt with its version; parameter ``prompt_id``."""
    return (
        select(col(_lb.label), col(_lb.version))
        .where(col(_lb.prompt_id) == bindparam("prompt_id"))
        .order_by(col(_lb.label))
    )


@functools.cache
def prompt_id() -> AnySelect:
    """The id of a prompt; parameter ``name``."""
    return select(col(_p.id)).where(col(_p.name) == bindparam("name"))


@functools.cache
def version_rows(include_archived: bool) -> AnySelect:
    """Every version of one prompt without content, oldest first; parameter ``prompt_id``.

    ``created_at`` comes back raw (text on SQLite); convert it with
    :func:`~llmops.db.timestamps.as_utc_column`.
    """
    query = (
        select(
            col(_pv.version),
            col(_pv.digest),
            col(_pv.message),
            col(_pv.author),
            type_coerce(col(_pv.created_at), _RAW),
            col(_pv.archived),
        )
        .where(col(_pv.prompt_id) == bindparam("prompt_id"))
        .order_by(col(_pv.version))
    )
    return query if include_archived else query.where(col(_pv.archived).is_(False))


@functools.cache
def history_rows() -> AnySelect:
    """Audit events of one prompt, oldest first; parameter ``name``.

    Timestamps and JSON come back raw (text on SQLite): decoding them one value at a time through
    SQLAlchemy's type processors costs more than the query, so the caller decodes in bulk
    (:func:`decode_json_column`, :func:`~llmops.db.timestamps.as_utc`).
    """
    a = AuditEvent
    return (
        select(
            type_coerce(col(a.at), _RAW),
            col(a.actor),
            col(a.action),
            type_coerce(col(a.before), _RAW),
            type_coerce(col(a.after), _RAW),
        )
        .where(col(a.entity_type) == "prompt")
        .where(col(a.entity_key) == bindparam("name"))
        .order_by(col(a.id))
    )
