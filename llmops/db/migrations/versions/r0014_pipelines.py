"""Pipelines: runs of a pipeline file and their steps (cache key, outputs, timings, status).

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-03
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "pipeline_run",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("pipeline", sa.String(length=256), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("pid", sa.Integer(), nullable=False),
        sa.Column("host", sa.String(length=256), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
    )
    op.create_index("ix_pipeline_run_pipeline", "pipeline_run", ["pipeline"])
    op.create_index("ix_pipeline_run_status", "pipeline_run", ["status"])
    op.create_table(
        "pipeline_step",
        sa.Column(
            "run_id", sa.String(length=32), sa.ForeignKey("pipeline_run.id"), primary_key=True
        ),
        sa.Column("name", sa.String(length=128), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=256), nullable=False),
        sa.Column("key", sa.String(length=80), nullable=True),
        sa.Column("inputs", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("outputs", sa.JSON(), nullable=False),
        sa.Column("cached_from", sa.String(length=32), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("seconds", sa.Float(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", _TS, nullable=True),
        sa.Column("ended_at", _TS, nullable=True),
    )
    op.create_index("ix_pipeline_step_key", "pipeline_step", ["key"])


def downgrade() -> None:
    op.drop_index("ix_pipeline_step_key", "pipeline_step")
    op.drop_table("pipeline_step")
    op.drop_index("ix_pipeline_run_status", "pipeline_run")
    op.drop_index("ix_pipeline_run_pipeline", "pipeline_run")
    op.drop_table("pipeline_run")
