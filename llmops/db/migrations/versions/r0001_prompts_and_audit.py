"""Prompts, prompt versions, labels and the append-only audit log.

Revision ID: 0001
Revises:
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_TS = sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "prompt",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=False),
        sa.Column("latest_version", sa.Integer(), nullable=False),
    )
    op.create_index("ix_prompt_name", "prompt", ["name"], unique=True)
    op.create_table(
        "prompt_version",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("prompt_id", sa.Integer(), sa.ForeignKey("prompt.id"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("digest", sa.String(length=80), nullable=False),
        sa.Column("spec", sa.JSON(), nullable=False),
        sa.Column("message", sa.String(), nullable=False),
        sa.Column("author", sa.String(length=256), nullable=False),
        sa.Column("created_at", _TS, nullable=False),
        sa.Column("archived", sa.Boolean(), nullable=False),
        sa.UniqueConstraint("prompt_id", "version", name="uq_prompt_version_number"),
        sa.UniqueConstraint("prompt_id", "digest", name="uq_prompt_version_digest"),
    )
    op.create_index("ix_prompt_version_prompt_id", "prompt_version", ["prompt_id"])
    op.create_index(
        "ix_prompt_version_listing",
        "prompt_version",
        ["prompt_id", "version", "digest", "message", "author", "created_at", "archived"],
    )
    op.create_table(
        "prompt_label",
        sa.Column("prompt_id", sa.Integer(), sa.ForeignKey("prompt.id"), primary_key=True),
        sa.Column("label", sa.String(length=128), primary_key=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("updated_at", _TS, nullable=False),
        sa.Column("updated_by", sa.String(length=256), nullable=False),
    )
    op.create_table(
        "audit_event",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("at", _TS, nullable=False),
        sa.Column("actor", sa.String(length=256), nullable=False),
        sa.Column("action", sa.String(length=64), nullable=False),
        sa.Column("entity_type", sa.String(length=64), nullable=False),
        sa.Column("entity_key", sa.String(length=256), nullable=False),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("after", sa.JSON(), nullable=True),
    )
    op.create_index("ix_audit_entity", "audit_event", ["entity_type", "entity_key", "id"])
    _refuse("audit_event", "UPDATE", "audit_event is append-only")
    _refuse("audit_event", "DELETE", "audit_event is append-only")
    # A version's content never changes and it is never deleted; only `archived` may flip.
    _refuse(
        "prompt_version",
        "UPDATE OF prompt_id, version, digest, spec, message, author, created_at",
        "prompt versions are immutable",
    )
    _refuse("prompt_version", "DELETE", "prompt versions are immutable")


def _refuse(table: str, event: str, message: str) -> None:
    """A trigger that aborts ``event`` (UPDATE [OF cols] / DELETE) on ``table`` with ``message``."""
    dialect = op.get_bind().dialect.name
    name = f"{table}_no_{event.split(maxsplit=1)[0].lower()}"
    if dialect == "sqlite":
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
            f"BEGIN SELECT RAISE(ABORT, '{message}'); END"
        )
    elif dialect == "postgresql":
        op.execute(
            f"CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS "
            f"$$ BEGIN RAISE EXCEPTION '{message}'; END $$"
        )
        op.execute(
            f"CREATE TRIGGER {name} BEFORE {event} ON {table} "
            f"FOR EACH ROW EXECUTE FUNCTION {name}()"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        for table, verb in (
            ("audit_event", "update"),
            ("audit_event", "delete"),
            ("prompt_version", "update"),
            ("prompt_version", "delete"),
        ):
            op.execute(f"DROP TRIGGER IF EXISTS {table}_no_{verb} ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_no_{verb}()")
    op.drop_table("audit_event")
    op.drop_table("prompt_label")
    op.drop_table("prompt_version")
    op.drop_table("prompt")
