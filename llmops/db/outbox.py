"""The event outbox: a registry state change and the event that reports it commit together.

:func:`emit` adds a ``registry_event`` row inside the caller's write transaction; delivery to
webhooks happens afterwards (:mod:`llmops.registry.events`), so a slow or failing receiver never
blocks or undoes the change, and an event is never sent for a change that rolled back.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.orm import Session

from llmops.db.models import RegistryEvent
from llmops.db.timestamps import utcnow

__all__ = ["EVENT_TYPES", "MODEL_KINDS", "emit"]

EVENT_TYPES = (
    "model.version.registered",
    "model.alias.moved",
    "model.promotion.requested",
    "model.promotion.approved",
    "model.promotion.rejected",
    "model.promoted",
    "model.promotion.refused",
    "model.rolled_back",
    "canary.start",
    "canary.advance",
    "canary.rollback",
    "canary.promote",
    "canary.winner",
)
"""Every event type, as named in ``[[events.webhooks]] events = [...]``."""

MODEL_KINDS = frozenset({"base-model", "adapter", "merged-model"})
"""Artifact kinds that are model versions."""


def emit(session: Session, *, type: str, model: str, payload: dict[str, Any]) -> None:
    """Append an event inside the caller's transaction (it commits or rolls back with it)."""
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown event type {type!r}")
    session.add(
        RegistryEvent(
            delivery_id=f"dlv-{uuid.uuid4().hex}",
            type=type,
            model=model,
            payload={"type": type, "model": model, "at": utcnow().isoformat(), **payload},
        )
    )
