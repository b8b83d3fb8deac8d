"""Artifacts, artifact versions and aliases, and the chunk index of artifact stores.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "artifact",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_artifact_name", "artifact", ["name"], unique=True)
    op.create_table(
        "artifact_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("artifact_id", sa.Integer(), sa.ForeignKey("artifact.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("store", sa.String(length=512), nullable=False),
        sa.Column("bytes_total", sa.BigInteger(), nullable=False),
        sa.Column("file_count", sa.Integer(), nullable=False),
        sa.Column("parents", sa.JSON(), nullable=False),
        sa.Column("meta", sa.JSON(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.UniqueConstraint("artifact_id", "version", name="uq_artifact_version_number"),
    )
    op.create_index("ix_artifact_version_artifact_id", "artifact_version", ["artifact_id"])
    op.create_index("ix_artifact_version_digest", "artifact_version", ["digest"])
    op.create_table(
        "artifact_alias",
        sa.Column("artifact_id", sa.Integer(), sa.ForeignKey("artifact.id"), primary_key=True),
        sa.Column("alias", sa.String(length=128), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
    )
    op.create_table(
        "store_pack",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("store", sa.String(length=512), nullable=False),
        sa.Column("key", sa.String(length=256), nullable=False),
        sa.Column("size", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("last_used_at", _TS, nullable=False),
    )
    op.create_table(
        "store_chunk",
        sa.Column("store", sa.String(length=512), primary_key=True),
        sa.Column("digest", sa.String(length=64), primary_key=True),
        sa.Column("pack_id", sa.Integer(), sa.ForeignKey("store_pack.id"), nullable=False),
        sa.Column("offset", sa.BigInteger(), nullable=False),
        sa.Column("stored_length", sa.BigInteger(), nullable=False),
        sa.Column("raw_length", sa.BigInteger(), nullable=False),
        sa.Column("codec", sa.String(length=16), nullable=False),
    )
    op.create_index("ix_store_chunk_pack_id", "store_chunk", ["pack_id"])


def downgrade() -> None:
    op.drop_table("store_chunk")
    op.drop_table("store_pack")
    op.drop_table("artifact_alias")
    op.drop_table("artifact_version")
    op.drop_table("artifact")
