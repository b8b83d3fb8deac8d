"""Approvals of promotion requests: who may approve (the policy's ``approvers``, never the
requester unless ``allow_self``), recording a decision, and the ``approvals`` condition."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlmodel import col

from llmops.db.audit import record_event
from llmops.db.models import ModelApproval, ModelRequest
from llmops.db.outbox import emit
from llmops.db.timestamps import utcnow
from llmops.errors import ConflictError, NotFoundError, PromotionError
from llmops.registry.records import ApprovalResult, Condition

if TYPE_CHECKING:
    from llmops.registry.models import ModelRegistry
    from llmops.registry.policy import Policy

__all__ = ["approval_condition", "counted", "decide", "decisions"]


def decisions(registry: ModelRegistry, request_id: int) -> dict[str, str]:
    """Each approver's latest decision (``approve`` or ``reject``) on a request."""
    with registry.db.read() as session:
        rows = session.execute(
            select(col(ModelApproval.approver), col(ModelApproval.decision))
            .where(col(ModelApproval.request_id) == request_id)
            .order_by(col(ModelApproval.id))
        ).all()
    return {approver: decision for approver, decision in rows}


def counted(
    approvers: list[str] | None, allow_self: bool, requester: str, found: dict[str, str]
) -> list[str]:
    """The approvals that count: by an allowed approver, not the requester unless allowed."""
    return [
        who
        for who, decision in found.items()
        if decision == "approve"
        and (approvers is None or who in approvers)
        and (allow_self or who != requester)
    ]


def approval_condition(
    registry: ModelRegistry, policy: Policy, request: ModelRequest | None
) -> Condition:
    """Whether the request has the approvals the policy needs."""
    rule = policy.approvals
    assert rule is not None
    if request is None:
        return Condition(
            name="approvals",
            ok=rule.count == 0,
            detail=f"{rule.count} approval(s) needed; none requested yet (promote records the"
            " request)",
        )
    found = decisions(registry, request.id or 0)
    rejected = [who for who, d in found.items() if d == "reject"]
    if rejected:
        return Condition(
            name="approvals",
            ok=False,
            detail=f"request {request.id} was rejected by {', '.join(rejected)}",
        )
    good = counted(rule.approvers, rule.allow_self, request.requested_by, found)
    ok = len(good) >= rule.count
    return Condition(
        name="approvals",
        ok=ok,
        detail=f"{len(good)} of {rule.count} approval(s) on request {request.id}"
        + (f" ({', '.join(good)})" if good else "")
        + ("" if ok else "; approve with `llmops models approve REF ALIAS`"),
    )


def decide(
    registry: ModelRegistry, ref: str, alias: str, decision: str, comment: str
) -> ApprovalResult:
    """Record the current user's ``approve`` or ``reject`` on the pending request.

    Raises:
        NotFoundError: No promotion request is pending for it.
        PromotionError: The user requested it (and the policy does not allow self-approval)
            or is not one of the policy's approvers.
    """
    version = registry.get(ref)
    policy = registry.policy(version.name)
    rule = policy.approvals if policy is not None and alias in policy.guards else None
    request = registry.pending(version, alias)
    if request is None or rule is None or policy is None:
        raise NotFoundError(
            f"no promotion request of {version.ref} to {alias!r} waits for a decision",
            hint=f"run `llmops models promote {version.ref} {alias}` first",
        )
    me = registry.actor
    if me == request.requested_by and not rule.allow_self and decision == "approve":
        raise PromotionError(
            f"{me} requested this promotion and cannot approve it",
            hint="another approver must approve it (or the policy says allow_self: true)",
        )
    if rule.approvers is not None and me not in rule.approvers:
        raise PromotionError(
            f"{me} is not an approver of {version.name}",
            hint=f"approvers: {', '.join(rule.approvers)} (LLMOPS_USER says who you are)",
        )
    with registry.db.write() as session:
        registry.lock(session, version.name)
        row = session.get(ModelRequest, request.id)
        if row is None or row.status != "pending":
            raise ConflictError(
                f"request {request.id} was decided meanwhile", hint="see `llmops models history`"
            )
        existing = session.scalar(
            select(ModelApproval).where(
                col(ModelApproval.request_id) == row.id, col(ModelApproval.approver) == me
            )
        )
        if existing is None:
            session.add(
                ModelApproval(
                    request_id=row.id or 0, approver=me, decision=decision, comment=comment
                )
            )
        else:
            existing.decision, existing.comment, existing.at = decision, comment, utcnow()
        if decision == "reject":
            row.status, row.decided_at = "rejected", utcnow()
        action = "approved" if decision == "approve" else "rejected"
        details = {
            "version": version.version,
            "alias": alias,
            "request_id": row.id,
            "comment": comment,
            "policy_digest": policy.digest(),
        }
        record_event(
            session,
            actor=me,
            action=f"model.promotion.{action}",
            entity_type="artifact",
            entity_key=version.name,
            after=details,
        )
        emit(session, type=f"model.promotion.{action}", model=version.name,
             payload={**details, "actor": me})  # fmt: skip
    good = counted(rule.approvers, rule.allow_self, request.requested_by,
                   decisions(registry, request.id or 0))  # fmt: skip
    return ApprovalResult(
        request_id=request.id or 0, name=version.name, version=version.version, alias=alias,
        approver=me, decision=decision, approvals=len(good), needed=rule.count,
    )  # fmt: skip
