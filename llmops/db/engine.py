"""The registry database: engine setup, migrations on open, and read/write transactions.

SQLite (the default) runs in WAL mode with a busy timeout; write transactions start with
``BEGIN IMMEDIATE`` so that concurrent writers queue on the database lock instead of failing on
upgrade. PostgreSQL writers serialise on row locks (``SELECT ... FOR UPDATE``) taken by the
callers. Driver errors that mean "cannot reach" or "locked too long" become
:class:`~llmops.errors.DatabaseUnavailableError` with the URL (password hidden) and a hint.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, create_engine, event, text
from sqlalchemy.engine import Engine, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, OperationalError
from sqlalchemy.exc import DatabaseError as SQLAlchemyDatabaseError
from sqlmodel import Session

from llmops.db.migrations import HEAD
from llmops.errors import ConfigError, DatabaseError, DatabaseUnavailableError

__all__ = ["Database"]

_MIGRATION_LOCK_KEY = (
    0x6C6C6D6F  # "llmo": advisory lock id that serialises migrations on PostgreSQL
)


class Database:
    """A connection to the registry database.

    Args:
        url: Any SQLAlchemy URL: ``sqlite:///path/registry.db`` or
            ``postgresql+psycopg://user:pass@host/db``.
        busy_timeout_s: How long a writer waits for the lock before giving up.
        migrate: Apply pending Alembic migrations now.
        create: Create a SQLite database file (and its folder) that does not exist yet; when
            False a missing or empty file is an error (a typo in a URL must not silently start
            an empty registry).

    Raises:
        ConfigError: The URL does not parse, or (``create=False``) names no existing database.
        DatabaseError: The file is corrupt or not a database.
    """

    def __init__(
        self, url: str, *, busy_timeout_s: float = 30.0, migrate: bool = True, create: bool = True
    ) -> None:
        try:
            parsed = make_url(url)
        except ArgumentError:
            raise ConfigError(
                f"cannot parse database URL {url!r}",
                hint="use e.g. sqlite:///path/registry.db or postgresql+psycopg://user@host/db",
            ) from None
        self.url = url
        self.display_url = parsed.render_as_string(hide_password=True)
        self.dialect = parsed.get_backend_name()
        self.busy_timeout_s = busy_timeout_s
        self._registry_id: str | None = None
        if not create:
            self._check_exists(parsed)
        self.engine = self._create_engine(parsed, busy_timeout_s)
        if migrate:
            try:
                self.migrate()
                self._wal()
            except BaseException:
                self.engine.dispose()
                raise

    def __repr__(self) -> str:
        return f"Database({self.display_url!r})"

    def _check_exists(self, parsed: Any) -> None:
        if self.dialect != "sqlite":
            return  # a server database exists or the server says it does not
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError(
                f"registry database {self.display_url} is in memory: everything in it would be"
                " lost when the command ends",
                hint="give a file (sqlite:///path/registry.db) or a PostgreSQL URL",
            )
        path = Path(parsed.database)
        if not path.is_file() or path.stat().st_size == 0:
            what = "is empty" if path.is_file() else "does not exist"
            raise ConfigError(
                f"registry database {self.display_url} {what}",
                hint="check LLMOPS_DB_URL (or [database] url in llmops.toml); `llmops init`"
                " creates a new registry",
            )

    def _create_engine(self, parsed: Any, busy_timeout_s: float) -> Engine:
        if self.dialect == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
            engine = create_engine(
                parsed,
                connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
            )
            _configure_sqlite(engine, busy_timeout_s)
            return engine
        if self.dialect == "postgresql":
            from llmops._extras import require

            if parsed.get_driver_name() == "psycopg":
                require("psycopg", feature="a PostgreSQL registry")
            return create_engine(parsed, pool_pre_ping=True, connect_args={"connect_timeout": 5})
        try:
            return create_engine(parsed, pool_pre_ping=True)
        except Exception as exc:  # missing driver, unknown dialect
            raise ConfigError(
                f"cannot use database URL {self.display_url}: {exc}",
                hint="install the driver (pip install 'llmops[postgres]') or fix the URL",
            ) from None

    # -- transactions ----------------------------------------------------------------------

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A read-only Core connection (the fast path for lookups)."""
        with self._errors(), self.engine.connect() as conn:
            yield conn

    @contextmanager
    def read(self, *, snapshot: bool = False) -> Iterator[Session]:
        """An ORM session for reading. With ``snapshot``, every query in it sees the database as
        of its first one (PostgreSQL's READ COMMITTED would let a write committed between two
        queries show in the second only: totals from one table and histograms from another
        that disagree)."""
        with self._errors(), Session(self.engine) as session:
            if snapshot and self.engine.dialect.name == "postgresql":
                session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """An ORM session in a write transaction, committed on success, rolled back on error.

        On SQLite the transaction starts with ``BEGIN IMMEDIATE``: the database write lock is
        taken up front, so two writers never both read and then race to write.
        """
        with self._errors(), Session(self.engine) as session:
            session.connection(execution_options={"llmops_write": True})
            try:
                yield session
                session.commit()
            except BaseException:
                session.rollback()
                raise

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except OperationalError as exc:
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if "locked" in detail or "busy" in detail:
                raise DatabaseUnavailableError(
                    f"registry database {self.display_url} stayed locked for more than"
                    f" {self.busy_timeout_s:g}s ({detail})",
                    hint="another process holds a long write; retry, or raise busy_timeout",
                ) from exc
            raise DatabaseUnavailableError(
                f"cannot use registry database {self.display_url}: {detail}",
                hint="check that the server runs and LLMOPS_DB_URL is right",
            ) from exc
        except SQLAlchemyDatabaseError as exc:
            detail = str(exc.orig).strip().splitlines()[0] if exc.orig else str(exc)
            if self.dialect == "sqlite" and ("not a database" in detail or "malformed" in detail):
                raise DatabaseError(
                    f"registry database {self.display_url} is corrupt ({detail})",
                    hint="restore it from a backup, or move it away and run `llmops init` for a"
                    " new one",
                ) from exc
            self._raise_if_lost(exc)
            raise
        except DBAPIError as exc:
            self._raise_if_lost(exc)
            raise

    def _raise_if_lost(self, exc: DBAPIError) -> None:
        if exc.connection_invalidated:
            raise DatabaseUnavailableError(
                f"lost the connection to registry database {self.display_url}",
                hint="check that the server runs, then retry",
            ) from exc

    # -- migrations ------------------------------------------------------------------------

    def current_revision(self) -> str | None:
        """The Alembic revision the database is at, or ``None`` for an empty database."""
        with self._errors(), self.engine.connect() as conn:
            if not self.engine.dialect.has_table(conn, "alembic_version"):
                return None
            row = conn.execute(text("SELECT version_num FROM alembic_version")).first()
            return None if row is None else str(row[0])

    def migrate(self) -> None:
        """Bring the schema to the newest revision; safe to run from many processes at once.

        Raises:
            DatabaseError: The database is newer than this llmops, or a migration failed.
        """
        current = self.current_revision()
        if current == HEAD:
            return
        from alembic import command
        from alembic.config import Config
        from alembic.script import ScriptDirectory

        config = Config()
        config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
        known = {rev.revision for rev in ScriptDirectory.from_config(config).walk_revisions()}
        if current is None:
            self._check_empty()
        if current is not None and current not in known:
            raise DatabaseError(
                f"registry database {self.display_url} is at schema revision {current!r}, which"
                " this llmops does not know",
                hint="upgrade llmops (pip install -U llmops) to the version that wrote it",
            )
        with self._errors(), self.engine.connect() as plain:
            conn = plain.execution_options(llmops_write=True)
            with conn.begin():
                if self.dialect == "postgresql":
                    conn.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK_KEY})"))
                # Another process may have migrated while we waited for the lock.
                config.attributes["connection"] = conn
                command.upgrade(config, "head")

    def _wal(self) -> None:
        """SQLite in WAL mode (readers never wait for the writer). Set once the file is known to
        be an llmops registry: the mode is stored in the file, and another application's
        database must be left exactly as it was."""
        if self.dialect != "sqlite":
            return
        with self._errors():
            raw = self.engine.raw_connection()  # outside any transaction, as the pragma needs
            try:
                cursor = raw.cursor()
                cursor.execute("PRAGMA journal_mode = WAL")
                cursor.close()
            finally:
                raw.close()

    def _check_empty(self) -> None:
        """A database without llmops' schema must be empty before llmops creates its tables
        in it (a URL pointing at another application's database is refused)."""
        from sqlalchemy import inspect

        with self._errors(), self.engine.connect() as conn:
            tables = [t for t in inspect(conn).get_table_names() if not t.startswith("sqlite_")]
        if tables:
            raise DatabaseError(
                f"database {self.display_url} holds tables ({', '.join(sorted(tables)[:5])})"
                " but is not an llmops registry",
                hint="point LLMOPS_DB_URL at an empty database or an llmops registry",
            )

    @property
    def registry_id(self) -> str:
        """The registry's own random id (made when it was created), whatever URL reaches it."""
        if self._registry_id is None:
            with self._errors(), self.engine.connect() as conn:
                row = conn.execute(
                    text("SELECT value FROM registry_info WHERE key = 'registry_id'")
                ).first()
            if row is None:
                raise DatabaseError(
                    f"registry database {self.display_url} has no registry id",
                    hint="it was created by a damaged migration; restore it from a backup",
                )
            self._registry_id = str(row[0])
        return self._registry_id

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()


def _configure_sqlite(engine: Engine, busy_timeout_s: float) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Hand transaction control to the "begin" hook below (pysqlite's own BEGIN is DEFERRED).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(busy_timeout_s * 1000)}")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        write = conn.get_execution_options().get("llmops_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
