"""Per-minute rollups of the gateway's request log (totals and latency histograms), filled
from the requests already recorded, and an index to read raw requests by time.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "serve_rollup",
        sa.Column("logical", sa.String(length=128), primary_key=True),
        sa.Column("arm", sa.String(length=16), primary_key=True),
        sa.Column("model", sa.String(length=300), primary_key=True),
        sa.Column("minute", _TS, primary_key=True),
        sa.Column("requests", sa.Integer(), nullable=False),
        sa.Column("errors", sa.Integer(), nullable=False),
        sa.Column("failovers", sa.Integer(), nullable=False),
        sa.Column("prompt_tokens", sa.Integer(), nullable=False),
        sa.Column("completion_tokens", sa.Integer(), nullable=False),
    )
    op.create_table(
        "serve_latency_bucket",
        sa.Column("logical", sa.String(length=128), primary_key=True),
        sa.Column("arm", sa.String(length=16), primary_key=True),
        sa.Column("minute", _TS, primary_key=True),
        sa.Column("bucket", sa.Integer(), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
    )
    # The raw rows of a window's partial minutes are read by time, whatever their arm.
    op.create_index("ix_serve_request_at", "serve_request", ["logical", "at"])
    _backfill()


def _backfill() -> None:
    """Roll up the requests recorded before this revision, 50,000 rows at a time."""
    from llmops.serve.rollup import write_rollups

    bind = op.get_bind()
    requests = sa.table(
        "serve_request",
        sa.column("id", sa.Integer()),
        sa.column("at", _TS),
        sa.column("error", sa.Boolean()),
        sa.column("failover", sa.Boolean()),
        *(sa.column(c) for c in ("logical", "arm", "model", "latency_ms", "prompt_tokens",
                                 "completion_tokens")),
    )  # fmt: skip
    last = 0
    while True:
        rows = [
            dict(r._mapping)
            for r in bind.execute(
                sa.select(requests)
                .where(requests.c.id > last)
                .order_by(requests.c.id)
                .limit(50_000)
            )
        ]
        if not rows:
            break
        write_rollups(bind, rows, bind.dialect.name)
        last = rows[-1]["id"]


def downgrade() -> None:
    op.drop_index("ix_serve_request_at", table_name="serve_request")
    op.drop_table("serve_latency_bucket")
    op.drop_table("serve_rollup")
