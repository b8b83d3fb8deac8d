from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

import llmops.db.migrations as migrations
from llmops.db import Database
from llmops.db.models import load_all
from llmops.errors import DatabaseError


def test_head_constant_matches_alembic_head() -> None:
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    assert ScriptDirectory.from_config(config).get_current_head() == migrations.HEAD


def test_migrated_schema_matches_the_models(db_url: str) -> None:
    db = Database(db_url)
    try:
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), load_all())
        assert diff == []
        assert db.current_revision() == migrations.HEAD
    finally:
        db.dispose()


def test_opening_twice_is_a_no_op(db_url: str) -> None:
    Database(db_url).dispose()
    db = Database(db_url)
    assert db.current_revision() == migrations.HEAD
    db.dispose()


def test_database_from_a_newer_llmops_is_refused(db_url: str) -> None:
    db = Database(db_url)
    with db.engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    db.dispose()
    with pytest.raises(DatabaseError, match="revision '9999', which this llmops does not know"):
        Database(db_url)


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'r.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000
    db.dispose()


def test_unreachable_postgres_is_a_clear_error() -> None:
    pytest.importorskip("psycopg")
    from llmops.errors import DatabaseUnavailableError

    with pytest.raises(
        DatabaseUnavailableError,
        match=r"cannot use registry database"
        r" postgresql\+psycopg://u:\*\*\*@127\.0\.0\.1:1/x",
    ):
        Database("postgresql+psycopg://u:pw@127.0.0.1:1/x")


def test_later_stages_tables_are_defined_on_first_use() -> None:
    import subprocess
    import sys

    code = (
        "import sys, llmops.artifacts.store, llmops.db.models as m;"
        " before = 'llmops.db.serving_tables' in sys.modules;"
        " row = m.ServeRequest; print(before, row.__tablename__, 'serve_request' in"
        " m.SQLModel.metadata.tables, hasattr(m, 'NoSuchTable'))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "serve_request", "True", "False"]
    assert "serve_request" in load_all().tables and "pipeline_run" in load_all().tables
