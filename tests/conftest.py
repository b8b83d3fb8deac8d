"""Shared fixtures: workspaces on SQLite and on a real PostgreSQL server.

Database tests take the ``db_url`` fixture (or ``ws``, built on it) and run twice: on SQLite and
on the PostgreSQL server named by ``LLMOPS_TEST_POSTGRES_URL`` (``scripts/postgres.sh start``
prints one). Without that variable the PostgreSQL runs are skipped, unless
``LLMOPS_REQUIRE_POSTGRES=1`` (as in CI), where they fail instead.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

os.environ.setdefault("LLMOPS_USER", "tester")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # no network at import
for _var in ("LLMOPS_WORKSPACE", "LLMOPS_DB_URL", "LLMOPS_STORE_URL"):
    os.environ.pop(_var, None)

POSTGRES_URL = os.environ.get("LLMOPS_TEST_POSTGRES_URL", "")
REQUIRE_POSTGRES = os.environ.get("LLMOPS_REQUIRE_POSTGRES") == "1"


def _postgres_schema_url() -> Iterator[str]:
    """A fresh schema on the test server, dropped afterwards; the URL selects it."""
    if not POSTGRES_URL:
        if REQUIRE_POSTGRES:
            pytest.fail("LLMOPS_REQUIRE_POSTGRES=1 but LLMOPS_TEST_POSTGRES_URL is not set")
        pytest.skip("set LLMOPS_TEST_POSTGRES_URL (scripts/postgres.sh start) to run on PostgreSQL")
    from sqlalchemy import create_engine, text

    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    sep = "&" if "?" in POSTGRES_URL else "?"
    try:
        yield f"{POSTGRES_URL}{sep}options=-csearch_path%3D{schema}"
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
        admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.integration)])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A registry database URL, once per backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path / 'registry.db'}"
    else:
        yield from _postgres_schema_url()


@pytest.fixture
def ws_root(tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An initialised workspace folder whose database is ``db_url``."""
    from llmops import Workspace

    monkeypatch.setenv("LLMOPS_DB_URL", db_url)
    root = tmp_path / "ws"
    Workspace.init(root).close()
    return root


@pytest.fixture
def ws(ws_root: Path) -> Iterator[object]:
    """An open workspace with the example prompts (not yet pushed)."""
    from llmops import Workspace

    workspace = Workspace.open(ws_root)
    yield workspace
    workspace.close()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny Llama and tokenizer built locally once per test session (no model hub)."""
    from llmops.train.tiny import make_tiny_model

    return make_tiny_model(tmp_path_factory.mktemp("tiny") / "model")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Modules with ``slow`` tests run first (stable order otherwise): with ``-n 2`` a
    five-minute test collected near the end (tests/test_readme.py sorts after most folders)
    kept one worker busy long after the other had finished everything else."""
    slow = {
        item.module.__name__ for item in items if item.get_closest_marker("slow") and item.module
    }
    items.sort(key=lambda item: 0 if item.module and item.module.__name__ in slow else 1)
