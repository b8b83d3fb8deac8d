"""Registry identity: a random id made when the registry is created, so that artifact stores
know which registry owns them whatever URL reaches it.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-01
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    table = op.create_table(
        "registry_info",
        sa.Column("key", sa.String(length=64), primary_key=True),
        sa.Column("value", sa.String(length=256), nullable=False),
    )
    op.bulk_insert(table, [{"key": "registry_id", "value": uuid.uuid4().hex}])


def downgrade() -> None:
    op.drop_table("registry_info")
