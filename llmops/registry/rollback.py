"""Rollback: an alias goes back to the version that held it before its current holder.

The holders are read from the alias's audited moves as a stack (a move pushes, a rollback
pops), so rolling back twice goes two holders back, never forth between the last two.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from llmops.db.audit import record_event
from llmops.db.models import ArtifactAlias
from llmops.db.outbox import emit
from llmops.db.pointers import move_pointer
from llmops.errors import ConflictError, InputError
from llmops.registry.records import RollbackResult

if TYPE_CHECKING:
    from llmops.registry.models import ModelRegistry

__all__ = ["holders", "rollback"]


def holders(registry: ModelRegistry, name: str, alias: str) -> list[int]:
    """The alias's holders as a stack, the current one last."""
    stack: list[int] = []
    for e in registry.history(name):
        if e["action"] != "artifact.alias.set" or e.get("alias") != alias:
            continue
        if e.get("via") == "rollback" and stack:
            stack.pop()
        else:
            stack.append(int(e["version"]))
    return stack


def rollback(registry: ModelRegistry, ref: str) -> RollbackResult:
    """Move ``name@alias`` back to its previous holder, audited and evented.

    Raises:
        InputError: ``ref`` is not ``NAME@ALIAS``, or the alias had no previous holder.
        ConflictError: The alias moved meanwhile.
    """
    name, _, alias = ref.partition("@")
    if not name or not alias or alias.isdigit():
        raise InputError(
            f"rollback takes NAME@ALIAS, got {ref!r}",
            hint="e.g. `llmops models rollback support-lora@production`",
        )
    registry.get(f"{name}@{alias}")  # a clear error for unknown models and aliases
    stack = holders(registry, name, alias)
    if len(stack) < 2:
        raise InputError(
            f"{name}@{alias} has no previous holder to roll back to",
            hint=f"see `llmops models history {name}`",
        )
    current, target = stack[-1], stack[-2]
    with registry.db.write() as session:
        artifact = registry.lock(session, name)
        now = session.get(ArtifactAlias, (artifact.id, alias))
        if now is None or now.version != current:
            raise ConflictError(f"{name}@{alias} moved while rolling back", hint="run it again")
        move_pointer(
            session, ArtifactAlias, owner_id=artifact.id or 0, name=alias, version=target,
            actor=registry.actor, entity_type="artifact", entity_key=name,
            note={"via": "rollback"},
        )  # fmt: skip
        details = {"alias": alias, "version": target, "previous": current}
        record_event(
            session, actor=registry.actor, action="model.rollback", entity_type="artifact",
            entity_key=name, after=details,
        )  # fmt: skip
        emit(session, type="model.rolled_back", model=name,
             payload={**details, "actor": registry.actor})  # fmt: skip
    return RollbackResult(name=name, alias=alias, version=target, previous=current)
