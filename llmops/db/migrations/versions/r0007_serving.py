"""Serving: backends, traffic policies, gateway API keys, the per-request log, feedback and
shadow pairs.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "serve_backend",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("model", sa.String(length=128), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("served_name", sa.String(length=256), nullable=False),
        sa.Column("url", sa.String(length=1000), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("base", sa.String(length=300), nullable=True),
        sa.Column("pid", sa.Integer(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("url", "served_name", name="uq_serve_backend_target"),
    )
    op.create_index("ix_serve_backend_model", "serve_backend", ["model"])
    op.create_table(
        "traffic_policy",
        sa.Column("logical", sa.String(length=128), primary_key=True),
        sa.Column("stable", sa.String(length=300), nullable=False),
        sa.Column("candidate", sa.String(length=300), nullable=True),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("sticky", sa.String(length=200), nullable=True),
        sa.Column("shadow", sa.Float(), nullable=False),
        sa.Column("killed", sa.Boolean(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "gateway_key",
        sa.Column("id", sa.String(length=40), primary_key=True),
        sa.Column("digest", sa.String(length=64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("models", sa.JSON(), nullable=False),
        sa.Column("rate_per_minute", sa.Integer(), nullable=True),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("revoked_at", _TS, nullable=True),
    )
    op.create_table(
        "serve_request",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("response_id", sa.String(length=40), nullable=False, unique=True),
        sa.Column("logical", sa.String(length=128), nullable=False),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("error", sa.Boolean(), nullable=False),
        sa.Column("failover", sa.Boolean(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("ttft_ms", sa.Float(), nullable=True),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("replica", sa.String(length=64), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=True),
    )
    op.create_index("ix_serve_request_arm", "serve_request", ["logical", "arm", "at"])
    op.create_table(
        "serve_feedback",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("response_id", sa.String(length=40), nullable=False),
        sa.Column("logical", sa.String(length=128), nullable=False),
        sa.Column("arm", sa.String(length=16), nullable=False),
        sa.Column("model", sa.String(length=300), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("comment", sa.String(), nullable=False),
        sa.Column("key_id", sa.String(length=40), nullable=True),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_serve_feedback_response_id", "serve_feedback", ["response_id"])
    op.create_table(
        "shadow_pair",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("response_id", sa.String(length=40), nullable=False),
        sa.Column("logical", sa.String(length=128), nullable=False),
        sa.Column("stable_model", sa.String(length=300), nullable=False),
        sa.Column("candidate_model", sa.String(length=300), nullable=False),
        sa.Column("messages", sa.JSON(), nullable=False),
        sa.Column("stable_answer", sa.String(), nullable=False),
        sa.Column("candidate_answer", sa.String(), nullable=True),
        sa.Column("candidate_error", sa.String(length=1000), nullable=True),
        sa.Column("stable_latency_ms", sa.Float(), nullable=False),
        sa.Column("candidate_latency_ms", sa.Float(), nullable=True),
        sa.Column("at", _TS, nullable=False),
    )
    op.create_index("ix_shadow_pair_logical", "shadow_pair", ["logical", "id"])


def downgrade() -> None:
    for table in (
        "shadow_pair", "serve_feedback", "serve_request", "gateway_key", "traffic_policy",
        "serve_backend",
    ):  # fmt: skip
        op.drop_table(table)
