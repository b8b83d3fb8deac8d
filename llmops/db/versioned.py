"""The versioned-record core: numbered immutable versions under a named owner, appended the same
way for every versioned thing (prompts, artifacts, and the model registry on top of them).

A version is appended inside one write transaction, under the owner's row lock: an identical
content digest returns the version that already has it (idempotent); otherwise the next number
(gap-free: ``latest_version + 1`` read under the lock) is inserted with an audit row in the same
transaction. :func:`with_retries` is the one retry policy for the race PostgreSQL allows between
two first inserts of a new name. Movable pointers (labels, aliases) are
:func:`llmops.db.pointers.move_pointer`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import SQLModel, col

from llmops.db.audit import record_event
from llmops.db.models import Artifact, Prompt

__all__ = ["Appended", "append_version", "lock_owner", "with_retries"]

Owner = TypeVar("Owner", Prompt, Artifact)
T = TypeVar("T")

RETRIES = 8


@dataclass(frozen=True, slots=True)
class Appended:
    """Outcome of :func:`append_version`."""

    number: int
    """The version's number (from 1)."""
    created: bool
    """False when a version of the owner already had this content."""


def lock_owner(
    session: Any,
    table: type[Owner],
    name: str,
    *,
    create_as: str | None = None,
    not_found: Callable[[str], Exception],
) -> Owner:
    """The owner row named ``name``, locked for the rest of the transaction; created (by
    ``create_as``) when missing, else ``not_found(name)`` is raised."""
    found: Owner | None = session.execute(
        select(table).where(col(table.name) == name).with_for_update()
    ).scalar_one_or_none()
    if found is not None:
        return found
    if create_as is None:
        raise not_found(name)
    owner = table(name=name, created_by=create_as, latest_version=0)
    session.add(owner)
    session.flush()
    return owner


def append_version(
    session: Any,
    owner: Owner,
    *,
    versions: type[SQLModel],
    owner_column: str,
    digest: str,
    build: Callable[[int, int], SQLModel],
    actor: str,
    entity_type: str,
    audit: dict[str, Any],
    same_content: Sequence[Any] = (),
    before_insert: Callable[[], None] | None = None,
) -> Appended:
    """Append a version to ``owner`` (locked with :func:`lock_owner` in this transaction).

    Args:
        versions: The version table; ``owner_column`` is its foreign key to the owner.
        digest: The content digest; a version with it (and ``same_content`` conditions) is
            returned instead of a new one.
        build: Makes the row from ``(owner id, version number)``.
        audit: What the ``<entity>.version.create`` audit row records (number and digest are
            added).
        before_insert: Last checks before the row is written (may raise to abort).
    """
    assert owner.id is not None
    table: Any = versions
    existing = session.execute(
        select(col(table.version))
        .where(col(getattr(table, owner_column)) == owner.id)
        .where(col(table.digest) == digest)
        .where(*same_content)
    ).first()
    if existing is not None:
        return Appended(int(existing[0]), created=False)
    if before_insert is not None:
        before_insert()
    number = owner.latest_version + 1
    session.add(build(owner.id, number))
    owner.latest_version = number
    session.add(owner)
    record_event(
        session,
        actor=actor,
        action=f"{entity_type}.version.create",
        entity_type=entity_type,
        entity_key=owner.name,
        after={"version": number, "digest": digest, **audit},
    )
    return Appended(number, created=True)


def with_retries(fn: Callable[[], T], *, attempts: int = RETRIES) -> T:
    """Run ``fn`` (one whole write transaction), retrying when two writers raced to insert the
    same new name (an ``IntegrityError`` that the losing transaction sees on PostgreSQL)."""
    for attempt in range(attempts):
        try:
            return fn()
        except IntegrityError:
            if attempt == attempts - 1:
                raise
            time.sleep(0.01 * (attempt + 1))
    raise AssertionError("unreachable")
