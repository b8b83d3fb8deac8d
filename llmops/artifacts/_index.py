"""The chunk index: which pack of which store holds each chunk, kept in the registry database.

Chunks are indexed as soon as their pack is durably stored, before any version refers to them,
so a push killed half-way leaves reusable chunks behind (the next push of the same content uploads
only what is missing) and garbage collection can find what no version refers to.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import blake3
from sqlalchemy import bindparam, delete, func, insert, select, text, update
from sqlmodel import col

from llmops.artifacts.backends import StoreError
from llmops.db import Database
from llmops.db.models import StoreChunk, StorePack
from llmops.db.timestamps import as_utc, utcnow

__all__ = ["ChunkIndex", "ChunkLocation", "PackEntry"]

_BATCH = 500


@dataclass(frozen=True, slots=True)
class PackEntry:
    """A chunk as written into a pack."""

    digest: str
    offset: int
    stored_length: int
    raw_length: int
    codec: str


@dataclass(frozen=True, slots=True)
class ChunkLocation:
    """Where to read a chunk."""

    digest: str
    pack_id: int
    pack_key: str
    offset: int
    stored_length: int
    raw_length: int
    codec: str


class ChunkIndex:
    """The chunk index of one store (rows are keyed by the store's URL).

    Everything that decides whether stored bytes are still needed takes the store lock
    (:meth:`lock`) inside its write transaction: a push indexing a pack and committing a version,
    and gc dropping packs and deleting objects. So gc either sees the new version (and keeps its
    data) or the push sees the data gone (and fails, leaving no version): never a version over
    missing data.
    """

    def __init__(self, db: Database, store: str) -> None:
        self.db = db
        self.store = store
        digest = blake3.blake3(f"llmops-store:{store}".encode()).digest()
        self._lock_key = int.from_bytes(digest[:8], "big", signed=True)
        c = StoreChunk
        self._has = (
            select(col(c.pack_id))
            .where(col(c.store) == bindparam("store"))
            .where(col(c.digest) == bindparam("digest"))
        )

    def lock(self, session: Any) -> None:
        """Take this store's lock for the rest of the write transaction ``session``.

        SQLite write transactions already hold the database's one write lock (``BEGIN
        IMMEDIATE``); PostgreSQL takes a transaction-scoped advisory lock keyed by the store.
        """
        if self.db.dialect == "postgresql":
            session.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": self._lock_key})

    def claim(self, session: Any, digests: list[str]) -> int:
        """Under :meth:`lock`: mark the packs holding ``digests`` as used now (so a gc that
        started earlier spares them) and return how many of ``digests`` the index has."""
        have = 0
        now = utcnow()
        for i in range(0, len(digests), _BATCH):
            part = digests[i : i + _BATCH]
            packs = (
                select(col(StoreChunk.pack_id))
                .where(col(StoreChunk.store) == self.store)
                .where(col(StoreChunk.digest).in_(part))
            )
            session.execute(
                update(StorePack).where(col(StorePack.id).in_(packs)).values(last_used_at=now)
            )
            have += session.execute(
                select(func.count())
                .select_from(StoreChunk)
                .where(col(StoreChunk.store) == self.store)
                .where(col(StoreChunk.digest).in_(part))
            ).scalar_one()
        return int(have)

    def pack_of(self, digest: str) -> int | None:
        """The pack id holding ``digest``, or None when the store lacks it."""
        with self.db.connect() as conn:
            row = conn.execute(self._has, {"store": self.store, "digest": digest}).first()
        return None if row is None else int(row[0])

    def touch(self, pack_ids: Iterable[int]) -> None:
        """Mark packs as used now, so that gc's grace period protects them."""
        ids = sorted(set(pack_ids))
        if not ids:
            return
        with self.db.write() as session:
            session.execute(
                update(StorePack).where(col(StorePack.id).in_(ids)).values(last_used_at=utcnow())
            )

    def add_pack(
        self, key: str, size: int, entries: list[PackEntry], *, stored: Callable[[], bool]
    ) -> None:
        """Index a pack that is already durably stored, and its chunks.

        ``stored`` is asked, under the store lock, whether the object is still there: a gc that
        ran between the upload and this call may have taken it for an orphan.

        When a concurrent push indexed the same chunk first, its row stands (``ON CONFLICT DO
        NOTHING``): both copies are intact, and gc reclaims the unreferenced one.

        Raises:
            StoreError: The object vanished before it was indexed.
        """
        with self.db.write() as session:
            self.lock(session)
            if not stored():
                raise StoreError(
                    f"pack {key} vanished before it was indexed (a gc with a short grace period"
                    " ran?)",
                    hint="run the push again; it uploads only what is missing",
                )
            pack = StorePack(store=self.store, key=key, size=size)
            session.add(pack)
            session.flush()
            assert pack.id is not None
            rows = [
                {
                    "store": self.store, "digest": e.digest, "pack_id": pack.id,
                    "offset": e.offset, "stored_length": e.stored_length,
                    "raw_length": e.raw_length, "codec": e.codec,
                }
                for e in entries
            ]  # fmt: skip
            for i in range(0, len(rows), _BATCH):
                session.execute(_insert_ignoring_duplicates(self.db.dialect), rows[i : i + _BATCH])

    def locate(self, digests: Iterable[str]) -> dict[str, ChunkLocation]:
        """Locations of the chunks the store has, by digest (missing ones are absent)."""
        wanted = sorted(set(digests))
        found: dict[str, ChunkLocation] = {}
        c, p = StoreChunk, StorePack
        with self.db.connect() as conn:
            for i in range(0, len(wanted), _BATCH):
                rows = conn.execute(
                    select(
                        col(c.digest),
                        col(c.pack_id),
                        col(p.key),
                        col(c.offset),
                        col(c.stored_length),
                        col(c.raw_length),
                        col(c.codec),
                    )
                    .join(p, col(p.id) == col(c.pack_id))
                    .where(col(c.store) == self.store)
                    .where(col(c.digest).in_(wanted[i : i + _BATCH]))
                )
                for row in rows:
                    found[row[0]] = ChunkLocation(*row)
        return found

    def packs(self) -> list[tuple[int, str, int, datetime, datetime]]:
        """``(id, key, size, created_at, last_used_at)`` of every pack of this store."""
        p = StorePack
        with self.db.connect() as conn:
            rows = conn.execute(
                select(
                    col(p.id), col(p.key), col(p.size), col(p.created_at), col(p.last_used_at)
                ).where(col(p.store) == self.store)
            ).all()
        return [tuple(r) for r in rows]  # type: ignore[misc]

    def chunks_of_pack(self, pack_id: int) -> list[str]:
        """Digests indexed in one pack."""
        with self.db.connect() as conn:
            return [
                r[0]
                for r in conn.execute(
                    select(col(StoreChunk.digest)).where(col(StoreChunk.pack_id) == pack_id)
                )
            ]

    def drop_pack(
        self,
        pack_id: int,
        *,
        unused_since: datetime,
        unreferenced: Callable[[Any, list[str]], bool],
    ) -> bool:
        """Remove a pack and its chunks from the index, unless it was used after
        ``unused_since`` or ``unreferenced(session, digests)`` says a version now needs one of
        its chunks (both checked under the store lock). Returns whether it was removed."""
        with self.db.write() as session:
            self.lock(session)
            row = session.execute(
                select(col(StorePack.last_used_at), col(StorePack.created_at))
                .where(col(StorePack.id) == pack_id)
                .with_for_update()
            ).first()
            if row is None:
                return False
            last_used, created = (as_utc(v) for v in row)
            if last_used >= unused_since or created >= unused_since:
                return False
            digests = [
                r[0]
                for r in session.execute(
                    select(col(StoreChunk.digest)).where(col(StoreChunk.pack_id) == pack_id)
                )
            ]
            if not unreferenced(session, digests):
                return False
            session.execute(delete(StoreChunk).where(col(StoreChunk.pack_id) == pack_id))
            session.execute(delete(StorePack).where(col(StorePack.id) == pack_id))
        return True

    def known_keys(self, session: Any, keys: list[str]) -> set[str]:
        """Which of ``keys`` are indexed packs (read inside the caller's transaction)."""
        found: set[str] = set()
        for i in range(0, len(keys), _BATCH):
            found.update(
                r[0]
                for r in session.execute(
                    select(col(StorePack.key))
                    .where(col(StorePack.store) == self.store)
                    .where(col(StorePack.key).in_(keys[i : i + _BATCH]))
                )
            )
        return found

    def forget(self, digests: Iterable[str]) -> int:
        """Drop index entries of chunks found corrupt, so the next push of intact bytes stores
        them again instead of trusting the bad copy. Returns how many were dropped."""
        wanted = sorted(set(digests))
        dropped = 0
        with self.db.write() as session:
            self.lock(session)
            for i in range(0, len(wanted), _BATCH):
                result = session.execute(
                    delete(StoreChunk)
                    .where(col(StoreChunk.store) == self.store)
                    .where(col(StoreChunk.digest).in_(wanted[i : i + _BATCH]))
                )
                dropped += int(getattr(result, "rowcount", 0) or 0)
        return dropped


def _insert_ignoring_duplicates(dialect: str) -> Any:
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(StoreChunk).on_conflict_do_nothing()
    if dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(StoreChunk).on_conflict_do_nothing()
    return insert(StoreChunk).prefix_with("IGNORE")  # MySQL/MariaDB
