"""Judged shadow pairs: which arm answered, and the pairwise judge's verdict on the pair.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("shadow_pair") as batch:
        batch.add_column(
            sa.Column("served", sa.String(length=16), nullable=False, server_default="stable")
        )
        batch.add_column(sa.Column("verdict", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("consistent", sa.Boolean(), nullable=True))
        batch.add_column(sa.Column("judged_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("judge_error", sa.String(length=1000), nullable=True))
        batch.add_column(sa.Column("judge_details", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("shadow_pair") as batch:
        for name in ("judge_details", "judge_error", "judged_at", "consistent", "verdict"):
            batch.drop_column(name)
        for name in ("served",):
            batch.drop_column(name)
