"""The model registry: promotion requests and approvals, semantic versions, the evidence index
(which model digests each eval run tested, backfilled from the runs already stored), and the
event outbox with per-webhook deliveries.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    targets = op.create_table(
        "eval_target",
        sa.Column("run_id", sa.String(length=32), sa.ForeignKey("eval_run.id"), primary_key=True),
        sa.Column("target", sa.String(length=256), primary_key=True),
        sa.Column("role", sa.String(length=16), primary_key=True),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("ref", sa.String(length=300), nullable=True),
    )
    op.create_index("ix_eval_target_digest", "eval_target", ["digest"])
    op.create_table(
        "model_request",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("artifact_id", sa.Integer(), sa.ForeignKey("artifact.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("alias", sa.String(length=128), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("requested_by", sa.String(length=256), nullable=False),
        sa.Column("requested_at", _TS, nullable=False),
        sa.Column("decided_at", _TS, nullable=True),
        sa.Column("policy_digest", sa.String(length=80), nullable=False),
    )
    op.create_index("ix_model_request_target", "model_request", ["artifact_id", "version", "alias"])
    op.create_table(
        "model_approval",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("request_id", sa.Integer(), sa.ForeignKey("model_request.id"), nullable=False),
        sa.Column("approver", sa.String(length=256), nullable=False),
        sa.Column("decision", sa.String(length=16), nullable=False),
        sa.Column("comment", sa.String(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.UniqueConstraint("request_id", "approver", name="uq_model_approval"),
    )
    op.create_index("ix_model_approval_request_id", "model_approval", ["request_id"])
    op.create_table(
        "model_semver",
        sa.Column("artifact_id", sa.Integer(), sa.ForeignKey("artifact.id"), primary_key=True),
        sa.Column("semver", sa.String(length=64), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("artifact_id", "version", name="uq_model_semver_version"),
    )
    op.create_table(
        "registry_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("delivery_id", sa.String(length=40), nullable=False, unique=True),
        sa.Column("type", sa.String(length=64), nullable=False),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_registry_event_type", "registry_event", ["type"])
    op.create_index("ix_registry_event_model", "registry_event", ["model"])
    op.create_table(
        "event_delivery",
        sa.Column("event_id", sa.Integer(), sa.ForeignKey("registry_event.id"), primary_key=True),
        sa.Column("webhook", sa.String(length=128), primary_key=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("next_attempt_at", _TS, nullable=False),
        sa.Column("delivered_at", _TS, nullable=True),
    )
    _backfill(targets)


def _backfill(targets: sa.Table) -> None:
    """Index the model identities that eval runs stored before this revision."""
    runs = sa.table("eval_run", sa.column("id"), sa.column("environment", sa.JSON()))
    rows = []
    for run_id, environment in op.get_bind().execute(sa.select(runs.c.id, runs.c.environment)):
        models = (environment or {}).get("models") or {}
        for target, identity in models.items():
            rows += [
                {"run_id": run_id, "target": target[:256], "role": role,
                 "digest": identity[digest], "ref": identity.get(ref)}
                for role, digest, ref in (("model", "digest", "ref"),
                                          ("adapter", "adapter_digest", "adapter_ref"))
                if identity.get(digest)
            ]  # fmt: skip
    if rows:
        op.bulk_insert(targets, rows)


def downgrade() -> None:
    op.drop_table("event_delivery")
    op.drop_table("registry_event")
    op.drop_table("model_semver")
    op.drop_table("model_approval")
    op.drop_table("model_request")
    op.drop_table("eval_target")
