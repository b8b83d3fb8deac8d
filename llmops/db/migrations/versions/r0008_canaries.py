"""Canaries: the rollout's spec and state, its decisions, and controller leases.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "canary",
        sa.Column("logical", sa.String(length=128), primary_key=True),
        sa.Column("candidate", sa.String(length=300), nullable=False),
        sa.Column("stable", sa.String(length=300), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("state", sa.String(length=24), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("step_started_at", _TS, nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("started_by", sa.String(length=256), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("revision", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
    )
    op.create_table(
        "canary_decision",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("logical", sa.String(length=128), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.Column("action", sa.String(length=24), nullable=False),
        sa.Column("reason", sa.String(), nullable=False),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("weight", sa.Float(), nullable=False),
        sa.Column("numbers", sa.JSON(), nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
    )
    op.create_index("ix_canary_decision_logical", "canary_decision", ["logical", "id"])
    op.create_table(
        "serve_lease",
        sa.Column("name", sa.String(length=160), primary_key=True),
        sa.Column("holder", sa.String(length=128), nullable=False),
        sa.Column("expires_at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("serve_lease")
    op.drop_table("canary_decision")
    op.drop_table("canary")
