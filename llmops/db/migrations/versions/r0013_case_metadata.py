"""Eval results carry their case's metadata (promptfoo's ``metadata``: tags, topics, sources),
so comparisons and the dashboard filter on it.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("eval_result") as batch:
        batch.add_column(sa.Column("case_metadata", sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("eval_result") as batch:
        batch.drop_column("case_metadata")
