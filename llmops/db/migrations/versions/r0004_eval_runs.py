"""Eval runs, their per-case results and pairwise judgements.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "eval_run",
        sa.Column("id", sa.String(length=32), primary_key=True),
        sa.Column("suite_name", sa.String(length=256), nullable=False),
        sa.Column("suite_path", sa.String(length=1024), nullable=False),
        sa.Column("suite_digest", sa.String(length=80), nullable=False),
        sa.Column("suite", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("targets", sa.JSON(), nullable=False),
        sa.Column("summary", sa.JSON(), nullable=True),
        sa.Column("cases", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("environment", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("started_at", _TS, nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("ended_at", _TS, nullable=True),
    )
    op.create_index("ix_eval_run_suite_digest", "eval_run", ["suite_digest"])
    op.create_table(
        "eval_result",
        sa.Column("run_id", sa.String(length=32), sa.ForeignKey("eval_run.id"), primary_key=True),
        sa.Column("case_index", sa.Integer(), primary_key=True),
        sa.Column("target", sa.String(length=128), primary_key=True),
        sa.Column("case_id", sa.String(length=256), nullable=True),
        sa.Column("vars", sa.JSON(), nullable=False),
        sa.Column("output", sa.Text(), nullable=False),
        sa.Column("passed", sa.Boolean(), nullable=True),
        sa.Column("score", sa.Float(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("assertions", sa.JSON(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
        sa.Column("cost", sa.Float(), nullable=False),
        sa.Column("latency_ms", sa.Float(), nullable=False),
        sa.Column("cached", sa.Boolean(), nullable=False),
        sa.Column("human", sa.String(length=16), nullable=True),
    )
    op.create_table(
        "eval_pair",
        sa.Column("run_id", sa.String(length=32), sa.ForeignKey("eval_run.id"), primary_key=True),
        sa.Column("case_index", sa.Integer(), primary_key=True),
        sa.Column("verdict", sa.String(length=8), nullable=True),
        sa.Column("consistent", sa.Boolean(), nullable=True),
        sa.Column("details", sa.JSON(), nullable=False),
        sa.Column("human", sa.String(length=16), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("eval_pair")
    op.drop_table("eval_result")
    op.drop_table("eval_run")
