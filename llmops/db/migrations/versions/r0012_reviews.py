"""Human review: items (two answers to one input, or one answer) and reviewers' labels.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "review_item",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("source_key", sa.String(length=300), nullable=False, unique=True),
        sa.Column("run_id", sa.String(length=32), nullable=True),
        sa.Column("case_index", sa.Integer(), nullable=True),
        sa.Column("input", sa.JSON(), nullable=False),
        sa.Column("answers", sa.JSON(), nullable=False),
        sa.Column("judge", sa.String(length=16), nullable=True),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
    )
    op.create_index("ix_review_item_source", "review_item", ["source"])
    op.create_index("ix_review_item_run_id", "review_item", ["run_id"])
    op.create_table(
        "review_label",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.String(length=32), sa.ForeignKey("review_item.id"), nullable=False),
        sa.Column("reviewer", sa.String(length=256), nullable=False),
        sa.Column("choice", sa.String(length=16), nullable=False),
        sa.Column("shown", sa.String(length=2), nullable=False),
        sa.Column("comment", sa.Text(), nullable=False),
        sa.Column("at", _TS, nullable=False),
        sa.UniqueConstraint("item_id", "reviewer", name="uq_review_label"),
    )
    op.create_index("ix_review_label_item_id", "review_label", ["item_id"])


def downgrade() -> None:
    op.drop_table("review_label")
    op.drop_table("review_item")
