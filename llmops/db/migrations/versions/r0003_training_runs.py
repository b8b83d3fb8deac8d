"""Training runs and their per-step metrics.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "training_run",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("recipe_name", sa.String(length=256), nullable=False),
        sa.Column("recipe", sa.JSON(), nullable=False),
        sa.Column("recipe_hash", sa.String(length=80), nullable=False),
        sa.Column("dataset_fingerprint", sa.String(length=80), nullable=False),
        sa.Column("dataset_ref", sa.String(length=300), nullable=False),
        sa.Column("base_model", sa.String(length=1024), nullable=False),
        sa.Column("base_model_digest", sa.String(length=80), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=False),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("output_dir", sa.String(length=1024), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
        sa.Column("step", sa.Integer(), nullable=False),
        sa.Column("max_steps", sa.Integer(), nullable=False),
        sa.Column("last_checkpoint_step", sa.Integer(), nullable=True),
        sa.Column("final_loss", sa.Float(), nullable=True),
        sa.Column("adapter_ref", sa.String(length=300), nullable=True),
        sa.Column("merged_ref", sa.String(length=300), nullable=True),
        sa.Column("error", sa.String(), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
    )
    op.create_index("ix_training_run_status", "training_run", ["status"])
    op.create_table(
        "run_metric",
        sa.Column(
            "run_id", sa.String(length=32), sa.ForeignKey("training_run.id"), primary_key=True
        ),
        sa.Column("step", sa.Integer(), primary_key=True),
        sa.Column("split", sa.String(length=8), primary_key=True),
        sa.Column("values", sa.JSON(), nullable=False),
        sa.Column("at", _TS, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("run_metric")
    op.drop_table("training_run")
