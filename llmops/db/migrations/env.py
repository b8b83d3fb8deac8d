"""Alembic environment: runs on the connection llmops hands over (see llmops.db.engine)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine

from llmops.db.models import load_all

config = context.config
target_metadata = load_all()
connection = config.attributes.get("connection")

if connection is not None:
    context.configure(connection=connection, target_metadata=target_metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
else:  # pragma: no cover - only when a developer runs the alembic command line
    engine = create_engine(str(config.get_main_option("sqlalchemy.url")))
    with engine.begin() as conn:
        context.configure(connection=conn, target_metadata=target_metadata, render_as_batch=True)
        with context.begin_transaction():
            context.run_migrations()
