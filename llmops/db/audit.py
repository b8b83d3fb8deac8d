"""The append-only audit log: one row per state change, written in the same transaction."""

from __future__ import annotations

from typing import Any

from sqlalchemy.orm import Session

from llmops.db.models import AuditEvent

__all__ = ["record_event"]


def record_event(
    session: Session,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_key: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
) -> None:
    """Append an audit event inside the caller's transaction, so it commits or rolls back with
    the change it describes.

    Args:
        session: The open write session.
        actor: Who made the change.
        action: Dotted verb, e.g. ``prompt.label.set``.
        entity_type: Kind of thing changed, e.g. ``prompt``.
        entity_key: Its name.
        before: State before the change (None when it did not exist).
        after: State after the change (None when it was removed).
    """
    session.add(
        AuditEvent(
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_key=entity_key,
            before=before,
            after=after,
        )
    )
