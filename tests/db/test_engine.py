"""Opening the registry: a mistyped URL or a damaged file is one clear error, never a new,
empty registry."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops import Workspace
from llmops.db import Database
from llmops.errors import ConfigError, DatabaseError


def test_opening_a_missing_sqlite_database_is_an_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'nonexistent' / 'dir' / 'x.db'}"
    with pytest.raises(ConfigError, match=r"x\.db does not exist; check LLMOPS_DB_URL"):
        Database(url, create=False)
    assert not (tmp_path / "nonexistent").exists()
    Database(url).dispose()  # creating is explicit
    Database(url, create=False).dispose()


def test_a_workspace_never_creates_its_registry_on_open(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Workspace.init(tmp_path / "ws", examples=False).close()
    monkeypatch.setenv("LLMOPS_DB_URL", f"sqlite:///{tmp_path / 'typo' / 'registry.db'}")
    with pytest.raises(ConfigError, match="does not exist"):
        Workspace.open(tmp_path / "ws").prompts.list()
    assert not (tmp_path / "typo").exists()


@pytest.mark.parametrize(
    ("damage", "error", "match"),
    [
        (lambda p: p.write_bytes(b"x" * 100 + p.read_bytes()[100:]), DatabaseError, "is corrupt"),
        (lambda p: p.write_text("hello\n"), DatabaseError, "is corrupt"),
        (lambda p: p.write_bytes(b""), ConfigError, "is empty"),
    ],
)
def test_a_damaged_registry_file_is_a_clear_error(
    tmp_path: Path, damage: object, error: type[Exception], match: str
) -> None:
    Workspace.init(tmp_path / "ws", examples=False).close()
    state = tmp_path / "ws" / ".llmops"
    for extra in state.glob("registry.db-*"):
        extra.unlink()
    damage(state / "registry.db")  # type: ignore[operator]
    with pytest.raises(error, match=match) as caught:
        Workspace.open(tmp_path / "ws").prompts.list()
    assert "\n" not in caught.value.one_line()  # type: ignore[attr-defined]


@pytest.mark.parametrize("url", ["sqlite://", "sqlite:///:memory:"])
def test_an_in_memory_registry_is_refused_for_a_workspace(url: str) -> None:
    with pytest.raises(ConfigError, match="in memory"):
        Database(url, create=False)


def test_another_applications_database_is_never_taken_over(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE customers (id INTEGER)")
    with pytest.raises(DatabaseError, match=r"holds tables \(customers\) but is not an llmops"):
        Database(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")]
    assert tables == ["customers"]


def test_a_refused_database_file_is_left_byte_for_byte_as_it_was(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "app.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER)")
    before = path.read_bytes()
    with pytest.raises(DatabaseError):
        Database(f"sqlite:///{path}")
    assert path.read_bytes() == before


@pytest.mark.parametrize("snapshot", [True, False])
def test_a_snapshot_read_sees_one_moment(db_url: str, snapshot: bool) -> None:
    """Totals from one table and histograms from another must come from the same moment: a
    write committed between the two queries of a snapshot read is not seen by the second."""
    from sqlalchemy import text

    db = Database(db_url)
    try:
        with db.write() as session:
            session.execute(text("CREATE TABLE IF NOT EXISTS t_snap (n INTEGER)"))
        with db.read(snapshot=snapshot) as reader:
            before = reader.execute(text("SELECT count(*) FROM t_snap")).scalar_one()
            with db.write() as writer:
                writer.execute(text("INSERT INTO t_snap VALUES (1)"))
            after = reader.execute(text("SELECT count(*) FROM t_snap")).scalar_one()
        if snapshot:
            assert after == before
        elif db.engine.dialect.name == "postgresql":
            assert after == before + 1  # READ COMMITTED: why the snapshot is needed
    finally:
        db.dispose()
