"""Traffic policies with header cohorts and a bandit's candidate shares.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("traffic_policy") as batch:
        batch.add_column(sa.Column("cohorts", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("candidates", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("traffic_policy") as batch:
        batch.drop_column("candidates")
        batch.drop_column("cohorts")
