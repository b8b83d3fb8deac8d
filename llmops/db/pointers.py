"""Movable pointers: prompt labels and artifact aliases move the same way.

A pointer names one version of its owner (a prompt or an artifact). Moving it happens inside the
caller's write transaction, under the owner's row lock, and appends an audit event
(``<entity>.<label|alias>.set``) with where it pointed before and after.
"""

from __future__ import annotations

from typing import Any, TypeVar

from sqlalchemy.orm import Session

from llmops.db.audit import record_event
from llmops.db.models import ArtifactAlias, PromptLabel
from llmops.db.timestamps import utcnow

__all__ = ["move_pointer"]

PointerRow = TypeVar("PointerRow", PromptLabel, ArtifactAlias)


def move_pointer(
    session: Session,
    table: type[PointerRow],
    *,
    owner_id: int,
    name: str,
    version: int,
    actor: str,
    entity_type: str,
    entity_key: str,
    note: dict[str, Any] | None = None,
) -> int | None:
    """Point ``name`` at ``version``; return the version it pointed at before (None: new).
    ``note`` adds to the audit row's ``after`` (how it moved: ``{"via": "rollback"}`` ...).

    Nothing is written, and nothing audited, when it already points there.
    """
    row = session.get(table, (owner_id, name))
    previous = row.version if row is not None else None
    if previous == version:
        return previous
    if row is None:
        row = table.create(owner_id, name, version, actor)
    else:
        row.version, row.updated_at, row.updated_by = version, utcnow(), actor
    session.add(row)
    kind = table.pointer_kind
    record_event(
        session,
        actor=actor,
        action=f"{entity_type}.{kind}.set",
        entity_type=entity_type,
        entity_key=entity_key,
        before={kind: name, "version": previous},
        after={kind: name, "version": version, **(note or {})},
    )
    return previous
