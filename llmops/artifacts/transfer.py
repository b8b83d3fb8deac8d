"""Streaming push of a folder into a store.

Push: files are scanned and checked (no pickle weights, valid safetensors headers, no links or
device files), cut into chunks (see :mod:`llmops.artifacts.chunking`), and worker threads hash
chunks in parallel while the calling thread appends new chunks to a pack file; full packs (64 MiB)
are stored and indexed in the background.

Uncompressed (the default on local disk), chunk bytes never enter a Python object: workers hash
the source into a reused buffer, the kernel copies new chunks from the source into the pack
(``copy_file_range``, see :mod:`llmops.artifacts._ranges`), and before a pack is stored each
copied chunk is hashed again where it landed, so a source changed between the two reads is an
error, never a chunk whose bytes differ from its digest. Compressed, workers read, hash and
compress each chunk (BLAKE3, zstd and ``os.pread`` release the GIL) and the pack gets the
compressed bytes. Memory is bounded by the chunks in flight (two per worker, at most 16 MiB each,
and only when compressing), whatever the artifact's size.

Pull lives in :mod:`llmops.artifacts.pull`.
"""

from __future__ import annotations

import os
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from llmops.artifacts import _ranges
from llmops.artifacts._hashcache import HashCache
from llmops.artifacts._index import ChunkIndex, PackEntry
from llmops.artifacts._ranges import ShortSource, copy_range, hash_read, write_at
from llmops.artifacts._sources import PICKLE_SUFFIXES, check_relpath, scan
from llmops.artifacts.backends import Backend, StoreError, disk_errors
from llmops.artifacts.chunking import (
    Span,
    compress,
    hash_chunk,
    plan_cdc,
    plan_safetensors,
)
from llmops.artifacts.manifest import ChunkRef, FileEntry, Manifest, TensorEntry, file_digest
from llmops.artifacts.tensors import SafetensorsHeader, read_header

__all__ = [
    "MISSING_CHUNK",
    "PICKLE_SUFFIXES",
    "Progress",
    "PushStats",
    "check_relpath",
    "default_workers",
    "manifest_of",
    "push_tree",
]

MISSING_CHUNK = (
    "is missing from the store index (never stored, or dropped by `llmops artifacts verify` as"
    " corrupt: push the intact source again, or run `llmops artifacts verify --repair SOURCE`)"
)

PACK_TARGET = 64 * 1024 * 1024
"""Packs are sealed at 64 MiB: object stores see few, large objects (one PUT per 64 MiB)."""

SEALERS = 2
"""Packs being stored (fsync, rename, index) at once while the next fills: bounds the staging
folder. Measured with 1.1 GiB: 2 or 4 sealers, 64 or 256 MiB packs took the same time within
this disk's noise; one 1 GiB pack at a time took 40% longer."""

Progress = Callable[[int], None]
"""Called with a number of bytes just processed."""


def default_workers() -> int:
    """Worker threads: one per core (hashing and compression are CPU-bound), at most 8."""
    return max(2, min(8, os.cpu_count() or 2))


@dataclass
class PushStats:
    """What a push did."""

    bytes_total: int = 0
    """Size of all files."""
    bytes_new: int = 0
    """Raw bytes of chunks the store did not have before."""
    bytes_stored: int = 0
    """Bytes written to the store for them (after compression)."""
    chunks_total: int = 0
    chunks_new: int = 0
    packs_written: int = 0


@dataclass(frozen=True, slots=True)
class _SourceFile:
    rel: str
    path: Path
    size: int
    mode: int
    spans: list[Span]
    header: SafetensorsHeader | None


def _plan(
    rel: str, path: Path, st: os.stat_result, *, known: list[tuple[str, int, int]] | None = None
) -> _SourceFile:
    mode = 0o755 if st.st_mode & 0o111 else 0o644
    header = None
    if rel.lower().endswith(".safetensors"):
        with path.open("rb") as fh:  # always validated, even when the chunks are known
            header = read_header(fh, path=rel, file_size=st.st_size)
    if known is not None:
        spans = [Span(offset, length) for _, offset, length in known]
    elif header is not None:
        spans = plan_safetensors(header, st.st_size)
    else:
        spans = plan_cdc(path, st.st_size)
    return _SourceFile(rel, path, st.st_size, mode, spans, header)


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def _cached_chunks(
    scanned: list[tuple[str, Path, os.stat_result]], cache: HashCache | None, index: ChunkIndex
) -> tuple[dict[str, list[tuple[str, int, int]]], set[int]]:
    """Chunk lists of unchanged files whose chunks the store still has (by relative path), and
    the packs holding them (which count as used now, so gc's grace period covers them)."""
    if cache is None:
        return {}, set()
    hits = {}
    for rel, path, st in scanned:
        found = cache.lookup(path.resolve(), st)
        if found is not None:
            hits[rel] = found
    if not hits:
        return {}, set()
    locations = index.locate(d for chunks in hits.values() for d, _, _ in chunks)
    usable = {
        rel: chunks for rel, chunks in hits.items() if all(d in locations for d, _, _ in chunks)
    }
    packs = {locations[d].pack_id for chunks in usable.values() for d, _, _ in chunks}
    return usable, packs


class _PackWriter:
    """Appends chunks to a staging pack file; seals full packs in the background.

    Chunks come as bytes (compressed ones) or as a range of a source file that the kernel copies
    into the pack; those are hashed again in the pack before it is stored.
    """

    def __init__(self, backend: Backend, index: ChunkIndex, stats: PushStats) -> None:
        self.backend = backend
        self.index = index
        self.stats = stats
        self.sealer = ThreadPoolExecutor(max_workers=SEALERS, thread_name_prefix="llmops-seal")
        self.pending: list[Future[None]] = []
        self.source: tuple[Path, int] | None = None
        self._open()

    def _open(self) -> None:
        self.pack_id = uuid.uuid4().hex
        self.fd, name = tempfile.mkstemp(dir=self.backend.staging_dir(), prefix="pack-")
        self.path: Path | None = Path(name)
        self.entries: list[PackEntry] = []
        self.copied: list[tuple[PackEntry, str]] = []
        self.size = 0

    def add(self, digest: str, stored: bytes | memoryview, codec: str, raw_length: int) -> None:
        write_at(self.fd, stored, self.size)
        self._added(PackEntry(digest, self.size, len(stored), raw_length, codec))

    def add_range(self, digest: str, source: _SourceFile, span: Span) -> None:
        """Copy a chunk from its source file into the pack (in the kernel)."""
        if self.source is None or self.source[0] != source.path:
            self._close_source()
            self.source = (source.path, os.open(source.path, os.O_RDONLY))
        try:
            copy_range(
                self.source[1], self.fd, span.length, src_offset=span.offset, dst_offset=self.size
            )
        except ShortSource:
            raise _changed(source.rel, "it got shorter") from None
        entry = PackEntry(digest, self.size, span.length, span.length, "raw")
        self.copied.append((entry, source.rel))
        self._added(entry)

    def _added(self, entry: PackEntry) -> None:
        self.entries.append(entry)
        self.size += entry.stored_length
        self.stats.bytes_stored += entry.stored_length
        if self.size >= PACK_TARGET:
            self.seal()

    def _close_source(self) -> None:
        if self.source is not None:
            os.close(self.source[1])
            self.source = None

    def seal(self) -> None:
        os.close(self.fd)
        self.fd = -1  # never closed twice: the number may belong to another file by then
        if not self.entries:
            self._discard()
            self._open()
            return
        assert self.path is not None
        key = f"packs/{self.pack_id[:2]}/{self.pack_id}.pack"
        sealed = (key, self.path, self.entries, self.size, self.copied)
        self.stats.packs_written += 1
        # At most two seals in flight: bounds staging disk and memory.
        while len([f for f in self.pending if not f.done()]) >= SEALERS:
            next(f for f in self.pending if not f.done()).result()
        self.pending.append(self.sealer.submit(self._store, *sealed))
        self.path = None  # a sealer owns that file now: abort() must not remove it
        self._open()

    def _store(
        self,
        key: str,
        path: Path,
        entries: list[PackEntry],
        size: int,
        copied: list[tuple[PackEntry, str]],
    ) -> None:
        try:
            _check_copies(path, copied)
            self.backend.put_file(key, path)
        finally:
            path.unlink(missing_ok=True)
        self.index.add_pack(key, size, entries, stored=lambda: self.backend.exists(key))

    def finish(self) -> None:
        self._close_source()
        self.seal()
        os.close(self.fd)
        self.fd = -1
        self._discard()
        try:
            for future in self.pending:
                future.result()
        finally:
            self.sealer.shutdown(wait=True)

    def abort(self) -> None:
        self._close_source()
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
        self._discard()
        self.sealer.shutdown(wait=True, cancel_futures=True)

    def _discard(self) -> None:
        """Remove the pack being filled (never one handed to a sealer)."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
            self.path = None


def _changed(rel: str, how: str = "") -> StoreError:
    """The error for a source file that changed while a push read it."""
    return StoreError(
        f"{rel} changed while it was being pushed" + (f" ({how})" if how else ""),
        hint="push it again once it is written",
    )


def _check_copies(pack: Path, copied: list[tuple[PackEntry, str]]) -> None:
    """Hash each chunk the kernel copied where it landed in ``pack``: a source that changed
    after its chunk was hashed must not be stored under the old digest (dedup would trust it)."""
    if not copied:
        return
    fd = os.open(pack, os.O_RDONLY)
    try:
        for entry, rel in copied:
            if _ranges.hash_range(fd, entry.offset, entry.raw_length) != entry.digest:
                raise _changed(rel)
    finally:
        os.close(fd)


def push_tree(
    source: Path,
    *,
    backend: Backend,
    index: ChunkIndex,
    allow_pickle: bool = False,
    compress_chunks: bool = False,
    cache: HashCache | None = None,
    workers: int | None = None,
    progress: Progress | None = None,
) -> tuple[Manifest, PushStats]:
    """Store the file or folder ``source``; return its manifest and what was written.

    Nothing here makes a version visible: the caller commits the manifest. With a ``cache``,
    files unchanged since an earlier push (same size, inode, mtime and ctime) whose chunks are
    all still in the store are not read again.

    Raises:
        UnsafeFileError: Pickle weights, a bad safetensors header, links or special files.
        StoreError: The store failed (after retries).
    """
    scanned = scan(source, allow_pickle=allow_pickle)
    cached, cached_packs = _cached_chunks(scanned, cache, index)
    files = [_plan(rel, path, st, known=cached.get(rel)) for rel, path, st in scanned]
    stats = PushStats(bytes_total=sum(f.size for f in files))
    digests: list[list[str]] = [
        [d for d, _, _ in cached[f.rel]] if f.rel in cached else [""] * len(f.spans) for f in files
    ]
    work = _ChunkWorker(files, index, compress_chunks=compress_chunks, reused=cached_packs)
    n_workers = workers or default_workers()
    # Chunks are appended to a pack in the staging folder before the backend gets it: a full
    # disk there is "store full" too, with nothing of the push visible.
    staging = f"the staging folder {backend.staging_dir()} of store {backend.url}"
    with disk_errors(staging):
        writer = _PackWriter(backend, index, stats)
    jobs: Iterator[tuple[int, int, Span]] = (
        (i, j, span)
        for i, f in enumerate(files)
        if f.rel not in cached
        for j, span in enumerate(f.spans)
    )
    for f in files:
        if f.rel in cached:  # known from the hash cache: nothing to read
            stats.chunks_total += len(f.spans)
            if progress is not None:
                progress(f.size)
    try:
        with disk_errors(staging):
            with ThreadPoolExecutor(n_workers, thread_name_prefix="llmops-push") as pool:
                window: list[tuple[int, int, Future[_ChunkResult]]] = []
                limit = 2 * n_workers
                for file_no, chunk_no, span in jobs:
                    window.append((file_no, chunk_no, pool.submit(work, file_no, span)))
                    if len(window) >= limit:
                        _drain(window.pop(0), files, digests, writer, stats, progress)
                while window:
                    _drain(window.pop(0), files, digests, writer, stats, progress)
            writer.finish()
    except BaseException:
        writer.abort()
        raise
    index.touch(work.reused_packs)
    _remember(scanned, files, digests, cached, cache)
    return _manifest(files, digests), stats


def manifest_of(
    source: Path, *, cache: HashCache | None = None, workers: int | None = None
) -> Manifest:
    """The manifest a push of ``source`` would store, computed without storing anything: its
    digest is the identity of those files whether they sit in a folder or in the store.

    Raises:
        UnsafeFileError: Links, special files or a bad safetensors header (pickles are allowed:
            nothing is loaded or stored here).
    """
    scanned = scan(source, allow_pickle=True, follow_links=True)
    known: dict[str, list[tuple[str, int, int]]] = {}
    if cache is not None:
        for rel, path, st in scanned:
            hit = cache.lookup(path.resolve(), st)
            if hit is not None:
                known[rel] = hit
    files = [_plan(rel, path, st, known=known.get(rel)) for rel, path, st in scanned]

    def hashes(f: _SourceFile) -> list[str]:
        if f.rel in known:
            return [d for d, _, _ in known[f.rel]]
        out = []
        fd = os.open(f.path, os.O_RDONLY)
        try:
            for span in f.spans:
                out.append(hash_read(fd, span.offset, span.length))
        except ShortSource:
            raise StoreError(f"{f.rel} got shorter while it was being hashed") from None
        finally:
            os.close(fd)
        return out

    with ThreadPoolExecutor(workers or default_workers(), thread_name_prefix="llmops-hash") as pool:
        digests = list(pool.map(hashes, files))
    _remember(scanned, files, digests, known, cache)
    return _manifest(files, digests)


class _ChunkResult(NamedTuple):
    digest: str
    stored: bytes | memoryview | None
    """The bytes to store (compressed or not), or None when the store has them already or
    ``copy`` says the pack gets them from the source file."""
    codec: str
    raw_length: int
    copy: bool = False
    """New, uncompressed: the kernel copies the range from the source file into the pack."""


class _ChunkWorker:
    """Hashes one chunk (and reads and compresses it when compressing); called from worker
    threads."""

    def __init__(
        self, files: list[_SourceFile], index: ChunkIndex, *, compress_chunks: bool,
        reused: set[int],
    ) -> None:  # fmt: skip
        self.files = files
        self.index = index
        self.compress_chunks = compress_chunks
        self.seen: set[str] = set()
        self.reused_packs = set(reused)
        self.lock = threading.Lock()

    def __call__(self, file_no: int, span: Span) -> _ChunkResult:
        f = self.files[file_no]
        data: bytes | None = None
        fd = os.open(f.path, os.O_RDONLY)
        try:
            if self.compress_chunks:
                data = os.pread(fd, span.length, span.offset)
                if len(data) != span.length:
                    raise ShortSource("short read")
                digest = hash_chunk(data)
            else:
                digest = hash_read(fd, span.offset, span.length)
        except ShortSource:
            raise _changed(f.rel, "it got shorter") from None
        finally:
            os.close(fd)
        with self.lock:
            duplicate = digest in self.seen
            self.seen.add(digest)
        if duplicate:
            return _ChunkResult(digest, None, "", span.length)
        pack = self.index.pack_of(digest)
        if pack is not None:
            with self.lock:
                self.reused_packs.add(pack)
            return _ChunkResult(digest, None, "", span.length)
        if data is None:
            return _ChunkResult(digest, None, "raw", span.length, copy=True)
        stored, codec = compress(data)
        return _ChunkResult(digest, stored, codec, span.length)


def _remember(
    scanned: list[tuple[str, Path, os.stat_result]],
    files: list[_SourceFile],
    digests: list[list[str]],
    cached: dict[str, list[tuple[str, int, int]]],
    cache: HashCache | None,
) -> None:
    """Check that no file changed while it was read, and record the digests in the cache."""
    for (rel, path, st), chunk_digests, f in zip(scanned, digests, files, strict=True):
        if rel in cached:
            continue
        if _stat_key(path.stat()) != _stat_key(st):
            raise _changed(rel)
        if cache is not None:
            spans = [(d, s.offset, s.length) for d, s in zip(chunk_digests, f.spans, strict=True)]
            cache.store(path.resolve(), st, spans)


def _manifest(files: list[_SourceFile], digests: list[list[str]]) -> Manifest:
    entries = []
    for f, chunk_digests in zip(files, digests, strict=True):
        entries.append(
            FileEntry(
                path=f.rel,
                size=f.size,
                mode=f.mode,
                digest=file_digest(f.size, chunk_digests),
                chunks=[
                    ChunkRef(digest=d, offset=s.offset, length=s.length)
                    for d, s in zip(chunk_digests, f.spans, strict=True)
                ],
                tensors=None
                if f.header is None
                else [
                    TensorEntry(
                        name=t.name, dtype=t.dtype, shape=list(t.shape), start=t.start, end=t.end
                    )
                    for t in f.header.tensors
                ],
                safetensors_metadata=None if f.header is None else f.header.metadata,
            )
        )
    return Manifest(files=entries)


def _drain(
    item: tuple[int, int, Future[_ChunkResult]],
    files: list[_SourceFile],
    digests: list[list[str]],
    writer: _PackWriter,
    stats: PushStats,
    progress: Progress | None,
) -> None:
    file_no, chunk_no, future = item
    chunk = future.result()
    digests[file_no][chunk_no] = chunk.digest
    stats.chunks_total += 1
    if chunk.copy or chunk.stored is not None:
        if chunk.copy:
            writer.add_range(chunk.digest, files[file_no], files[file_no].spans[chunk_no])
        else:
            assert chunk.stored is not None
            writer.add(chunk.digest, chunk.stored, chunk.codec, chunk.raw_length)
        stats.bytes_new += chunk.raw_length
        stats.chunks_new += 1
    if progress is not None:
        progress(chunk.raw_length)
