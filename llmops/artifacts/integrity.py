"""Integrity of a store: verification (and repair) of stored chunks, and garbage collection.

``verify`` re-reads and re-hashes chunks, names the file and byte range of anything missing or
corrupt, and drops corrupt chunks from the index so that the next push of intact bytes stores
them again. ``gc`` removes data no version refers to, past a grace period; every deletion is
re-checked under the store lock that pushes take too (see ``ChunkIndex.lock``).
The functions take the store first; :class:`~llmops.artifacts.store.ArtifactStore` calls them.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, select
from sqlmodel import col

from llmops._record import Record
from llmops.artifacts.backends import StoreError
from llmops.artifacts.pull import ChunkProblem, read_chunk
from llmops.artifacts.transfer import MISSING_CHUNK, default_workers, push_tree
from llmops.db.models import ArtifactVersionRow
from llmops.db.timestamps import as_utc
from llmops.errors import InputError

if TYPE_CHECKING:
    from llmops.artifacts.manifest import Manifest
    from llmops.artifacts.store import ArtifactStore, ArtifactVersion
    from llmops.refs import Ref

__all__ = ["STAGING_GRACE", "GcReport", "VerifyReport", "gc", "verify"]

STAGING_GRACE = timedelta(hours=1)
"""Staging files younger than this are never removed by gc (pushes in flight write them)."""


@dataclass(slots=True)
class VerifyReport(Record):
    """Result of re-reading and re-hashing stored chunks."""

    problems: list[dict[str, Any]] = field(default_factory=list)
    """Each missing or corrupt chunk: artifact, file, byte range, chunk, pack, problem."""
    chunks_checked: int = 0
    bytes_checked: int = 0
    quarantined: int = 0
    """Corrupt chunks dropped from the index (the next push of intact bytes stores them)."""
    repaired: int = 0
    """Chunks stored again from the intact source given to ``verify(repair=...)``."""

    _json_computed = ("ok",)

    @property
    def ok(self) -> bool:
        """True when nothing is missing or corrupt."""
        return not self.problems


@dataclass(slots=True)
class GcReport(Record):
    """What garbage collection removed (or would remove, in a dry run)."""

    packs_deleted: int = 0
    bytes_freed: int = 0
    orphans_deleted: int = 0
    """Objects no index row knew (packs of killed pushes, stale staging files)."""
    manifests_deleted: int = 0
    dry_run: bool = False


def verify(
    store: ArtifactStore,
    ref: str | Ref | None = None,
    *,
    workers: int | None = None,
    repair: str | os.PathLike[str] | None = None,
) -> VerifyReport:
    """Re-read and re-hash every chunk of one version (or of all versions).

    Each problem names the artifact version, file, byte range and chunk. Chunks found
    corrupt are dropped from the index, so that no push trusts them again: pushing the
    intact source afterwards stores them anew. With ``repair`` (a file or folder holding
    the intact data), that push happens now and the store is verified again.
    """
    report = _verify(store, ref, workers=workers)
    if repair is None or report.ok:
        return report
    manifest, stats = push_tree(
        Path(repair),
        backend=store.backend,
        index=store.index,
        allow_pickle=True,  # only bytes are stored here; no version is made
        compress_chunks=store.backend.compress_by_default
        if store.compression == "auto"
        else store.compression == "zstd",
        cache=store.hash_cache,
        workers=workers,
    )
    digest = manifest.digest()
    if any(v.digest == digest for v in store.ls() if v.store == store.backend.url):
        store._put_manifest(digest, manifest)  # the source's manifest replaces a damaged one
        store._manifests.pop(digest, None)
    again = _verify(store, ref, workers=workers)
    again.repaired = stats.chunks_new
    again.quarantined = report.quarantined
    return again


def _verify(store: ArtifactStore, ref: str | Ref | None, *, workers: int | None) -> VerifyReport:
    if ref is not None:
        versions = [store.get(ref)]
    else:
        versions = [v for v in store.ls() if v.store == store.backend.url]
    report = VerifyReport()
    checked: dict[str, str | None] = {}
    lost: list[str] = []
    lock = threading.Lock()
    uses: list[tuple[ArtifactVersion, str, Any]] = []
    for version in versions:
        try:
            manifest = store.manifest(version)
        except StoreError as exc:
            report.problems.append({"artifact": version.ref, "file": None, "problem": exc.message})
            continue
        for entry in manifest.files:
            for chunk in entry.chunks:
                uses.append((version, entry.path, chunk))
    locations = store.index.locate({c.digest for _, _, c in uses})

    def check(digest: str) -> None:
        location = locations.get(digest)
        problem: str | None = None
        if location is None:
            problem = MISSING_CHUNK
        else:
            try:
                data = read_chunk(store.backend, location, digest)
                with lock:
                    report.bytes_checked += len(data)
            except ValueError as exc:
                problem = f"is corrupt ({exc})"
            except StoreError as exc:
                problem = f"cannot be read ({exc.message})"
                if "is missing from store" in exc.message or "truncated" in exc.message:
                    with lock:
                        lost.append(digest)  # the bytes are gone: as bad as corrupt
        with lock:
            checked[digest] = problem
            report.chunks_checked += 1

    with ThreadPoolExecutor(workers or default_workers()) as pool:
        list(pool.map(check, sorted({c.digest for _, _, c in uses})))
    corrupt = [d for d, found in checked.items() if found and found.startswith("is corrupt")]
    corrupt += lost
    if corrupt:
        report.quarantined = store.index.forget(corrupt)
    for version, path, chunk in uses:
        problem = checked.get(chunk.digest)
        if problem is not None:
            location = locations.get(chunk.digest)
            found = ChunkProblem(
                path,
                chunk.offset,
                chunk.offset + chunk.length,
                chunk.digest,
                problem,
                location.pack_key if location else None,
            )
            report.problems.append(
                {
                    "artifact": version.ref,
                    "file": path,
                    "start": found.start,
                    "end": found.end,
                    "chunk": chunk.digest,
                    "pack": found.pack,
                    "problem": f"{version.ref}: {found}",
                }
            )
    return report


def gc(
    store: ArtifactStore, *, grace: timedelta = timedelta(hours=1), dry_run: bool = False
) -> GcReport:
    """Delete data no version refers to and nothing has used within ``grace``.

    The grace period protects pushes in flight: their packs are new, and the packs they
    reuse are touched when reused. Packs are removed from the index (under the write lock,
    re-checking their last use) before their objects are deleted.
    """
    if not isinstance(grace, timedelta) or grace < timedelta(0):
        raise InputError(
            f"gc grace period must be zero or more, got {grace}",
            hint="pass --grace-hours H with H >= 0 (default 1)",
        )
    store.check_owner()  # gc only knows this registry's versions: never collect a shared store
    report = GcReport(dry_run=dry_run)
    cutoff = datetime.now(UTC) - grace
    refs = _References(store)
    versions = [v for v in store.ls() if v.store == store.backend.url]
    for version in versions:
        refs.add(store.manifest(version))
    known_keys = _gc_packs(store, refs, cutoff, report)
    _gc_orphans(store, known_keys, {v.digest for v in versions}, cutoff.timestamp(), report)
    return report


class _References:
    """The chunks committed versions refer to. Read once at the start, and brought up to date
    under the store lock before each deletion: a version that committed while gc was looking
    (its packs stamped as used just before gc's cutoff) must still keep its data."""

    def __init__(self, store: ArtifactStore) -> None:
        self.store = store
        self.chunks: set[str] = set()
        # Versions are inserted under the store lock, so every version with a larger id than
        # this committed after it was read: the refresh below finds them.
        with store.db.connect() as conn:
            latest = conn.execute(
                select(func.max(col(ArtifactVersionRow.id))).where(
                    col(ArtifactVersionRow.store) == store.backend.url
                )
            ).scalar_one()
        self.seen: int = int(latest or 0)

    def add(self, manifest: Manifest) -> None:
        self.chunks.update(c.digest for f in manifest.files for c in f.chunks)

    def refresh(self, session: Any) -> None:
        """Under the store lock: add the versions committed since the last look."""
        rows = session.execute(
            select(col(ArtifactVersionRow.id), col(ArtifactVersionRow.digest))
            .where(col(ArtifactVersionRow.store) == self.store.backend.url)
            .where(col(ArtifactVersionRow.id) > self.seen)
        ).all()
        for row_id, digest in rows:
            self.add(self.store.manifest_by_digest(str(digest)))
            self.seen = max(self.seen, int(row_id or 0))

    def unreferenced(self, session: Any, digests: list[str]) -> bool:
        self.refresh(session)
        return not any(d in self.chunks for d in digests)


def _gc_packs(
    store: ArtifactStore, refs: _References, cutoff: datetime, report: GcReport
) -> set[str]:
    known_keys: set[str] = set()
    for pack_id, key, size, created, last_used in store.index.packs():
        known_keys.add(key)
        unused = as_utc(created) < cutoff and as_utc(last_used) < cutoff
        if not unused or any(d in refs.chunks for d in store.index.chunks_of_pack(pack_id)):
            continue
        if report.dry_run or store.index.drop_pack(
            pack_id, unused_since=cutoff, unreferenced=refs.unreferenced
        ):
            if not report.dry_run:
                store.backend.delete(key)
            report.packs_deleted += 1
            report.bytes_freed += size
    return known_keys


def _gc_orphans(
    store: ArtifactStore,
    known_keys: set[str],
    manifests: set[str],
    cutoff_ts: float,
    report: GcReport,
) -> None:
    """Objects nothing indexes: packs of killed pushes, unused manifests, staging files.

    Each deletion is re-checked under the store lock, since a push may have indexed a pack
    or committed a version after the listing. Staging files are spared for at least
    :data:`STAGING_GRACE` whatever the grace period: a push in flight is writing them.
    """
    stale = {
        obj.key: obj.size
        for obj in store.backend.list("packs/")
        if obj.key not in known_keys and obj.modified < cutoff_ts
    }
    unused_manifests = {
        obj.key: "blake3:" + obj.key.rsplit("/", 1)[-1].removesuffix(".json")
        for obj in store.backend.list("manifests/")
        if "blake3:" + obj.key.rsplit("/", 1)[-1].removesuffix(".json") not in manifests
        and obj.modified < cutoff_ts
    }
    staging_cutoff = min(cutoff_ts, time.time() - STAGING_GRACE.total_seconds())
    leftovers = [p for p in store.backend.staging_dir().glob("*") if _older(p, staging_cutoff)]
    if report.dry_run:
        report.orphans_deleted += len(stale) + len(leftovers)
        report.bytes_freed += sum(stale.values())
        report.manifests_deleted += len(unused_manifests)
        return
    keys = sorted(stale)
    for i in range(0, len(keys), 200):
        with store.db.write() as session:
            store.index.lock(session)
            batch = keys[i : i + 200]
            indexed = store.index.known_keys(session, batch)
            for key in batch:
                if key not in indexed:
                    store.backend.delete(key)
                    report.orphans_deleted += 1
                    report.bytes_freed += stale[key]
    names = sorted(unused_manifests)
    for i in range(0, len(names), 200):
        with store.db.write() as session:
            store.index.lock(session)
            batch = names[i : i + 200]
            used = set(
                session.execute(
                    select(col(ArtifactVersionRow.digest))
                    .where(col(ArtifactVersionRow.store) == store.backend.url)
                    .where(col(ArtifactVersionRow.digest).in_([unused_manifests[k] for k in batch]))
                ).scalars()
            )
            for key in batch:
                if unused_manifests[key] not in used:
                    store.backend.delete(key)
                    report.manifests_deleted += 1
    for path in leftovers:
        path.unlink(missing_ok=True)
        report.orphans_deleted += 1


def _older(path: Path, cutoff_ts: float) -> bool:
    """Whether ``path`` is a file last modified before ``cutoff_ts`` (False if it vanished)."""
    try:
        st = path.stat()
    except FileNotFoundError:
        return False
    return path.is_file() and st.st_mtime < cutoff_ts
