"""The registry database: engine, tables and migrations."""

from llmops.db.engine import Database

__all__ = ["Database"]
