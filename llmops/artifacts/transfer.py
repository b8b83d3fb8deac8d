"""Streaming push of a folder into a store.

Push: files are scanned and checked (no pickle weights, valid safetensors headers, no links or
device files), cut into chunks (see :mod:`llmops.artifacts.chunking`), and worker threads read,
hash and compress chunks in parallel (BLAKE3, zstd and ``os.pread`` all release the GIL) while the
calling thread appends new chunks to a pack file; full packs (64 MiB) are stored and indexed in the
background. Memory is bounded by the number of chunks in flight (two per worker, at most 16 MiB
each), whatever the artifact's size.

Pull lives in :mod:`llmops.artifacts.pull`.
"""

from __future__ import annotations

import os
import stat
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from llmops.artifacts._hashcache import HashCache
from llmops.artifacts._index import ChunkIndex, PackEntry
from llmops.artifacts.backends import Backend, StoreError, disk_errors
from llmops.artifacts.chunking import (
    Span,
    compress,
    hash_chunk,
    plan_cdc,
    plan_safetensors,
)
from llmops.artifacts.manifest import ChunkRef, FileEntry, Manifest, TensorEntry, file_digest
from llmops.artifacts.tensors import SafetensorsHeader, UnsafeFileError, read_header

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

PICKLE_SUFFIXES = frozenset(
    {".bin", ".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".joblib", ".dill", ".pkl.gz"}
)
"""Weight formats that unpickle (run code) when loaded; refused unless ``allow_pickle``.
Files under other names are refused too when their content is a pickle (see ``_pickled``)."""

MISSING_CHUNK = (
    "is missing from the store index (never stored, or dropped by `llmops artifacts verify` as"
    " corrupt: push the intact source again, or run `llmops artifacts verify --repair SOURCE`)"
)

TOOL_STATE = frozenset({".git", ".llmops"})
"""Folders of tools, not content: left out of pushes, and refused in manifests (a pull must
never write a repository's hooks or a workspace's registry)."""

PACK_TARGET = 64 * 1024 * 1024
"""Packs are sealed at 64 MiB: object stores see few, large objects (one PUT per 64 MiB)."""

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


def check_relpath(path: str) -> str:
    """Return ``path`` if it is a safe relative POSIX path inside an artifact, else raise.

    Raises:
        UnsafeFileError: Absolute, parent references, backslashes, empty or control characters.
    """
    parts = PurePosixPath(path).parts
    if any("\ud800" <= ch <= "\udfff" for ch in path):
        raise UnsafeFileError(
            f"file name {path!a} is not valid UTF-8",
            hint="rename the file (artifact paths are UTF-8 text)",
        )
    if any(part.lower() in TOOL_STATE for part in path.split("/")):
        raise UnsafeFileError(
            f"artifact path {path!r} is inside {sorted(TOOL_STATE)} (tool state, never part of"
            " an artifact)",
            hint="pushes leave .git and .llmops folders out; this manifest was made otherwise",
        )
    bad = (
        not path
        or path.startswith("/")
        or "\\" in path
        or any(p in ("..", ".", "") for p in path.split("/"))
        or any(ord(ch) < 32 for ch in path)
        or (parts and parts[0].startswith(".llmops-pull-"))
    )
    if bad:
        raise UnsafeFileError(
            f"unsafe path {path!r} in artifact",
            hint="artifact paths must be relative, without '..', '\\' or control characters",
        )
    return path


def _scan(
    source: Path, *, allow_pickle: bool, follow_links: bool = False
) -> list[tuple[str, Path, os.stat_result]]:
    """Every file under ``source`` with its relative path and stat. Links are refused (a push
    stores what is there, never what a link points at) unless ``follow_links``, used when only
    hashing a folder such as a Hugging Face cache snapshot, whose files are links to blobs."""
    if source.is_symlink() and not follow_links:
        raise UnsafeFileError(f"{source} is a symbolic link", hint="push the real folder or file")
    if source.is_file():
        return [(source.name, source, source.stat())]
    if not source.is_dir():
        raise UnsafeFileError(f"{source} does not exist or is not a file or folder")
    found = []
    for root, dirs, names in os.walk(source, followlinks=follow_links):
        dirs[:] = sorted(d for d in dirs if d.lower() not in TOOL_STATE)  # never pushed
        files = [f for f in names if f.lower() not in TOOL_STATE]
        for name in sorted(dirs + files):
            path = Path(root) / name
            st = path.stat() if follow_links else path.lstat()
            if stat.S_ISDIR(st.st_mode):
                continue
            rel = path.relative_to(source).as_posix()
            if stat.S_ISLNK(st.st_mode):
                raise UnsafeFileError(
                    f"{path} is a symbolic link", hint="replace it with the file it points to"
                )
            if not stat.S_ISREG(st.st_mode):
                raise UnsafeFileError(f"{path} is not a regular file (device, socket or fifo)")
            found.append((check_relpath(rel), path, st))
    found.sort(key=lambda item: item[0])
    if not allow_pickle:
        pickles = [rel for rel, path, _ in found if _pickled(rel, path)]
        if pickles:
            raise UnsafeFileError(
                f"refusing pickle-based weight file(s) {', '.join(pickles[:5])}: loading them can"
                " run arbitrary code",
                hint="convert to safetensors (transformers: save_pretrained(...,"
                " safe_serialization=True)), or pass --allow-pickle if you trust the source",
            )
    return found


def _pickled(rel: str, path: Path) -> bool:
    """Whether loading the file would unpickle: a pickle suffix, or pickle content under any
    name (a pickle stream, a zip holding one as torch saves, a numpy object array)."""
    if Path(rel).suffix.lower() in PICKLE_SUFFIXES:
        return True
    if rel.lower().endswith(".safetensors"):
        return False  # its header is validated; it cannot hold code
    try:
        with path.open("rb") as fh:
            head = fh.read(512)
    except OSError:
        return False
    if head.startswith(b"PK\x03\x04"):
        return _zip_holds_pickle(path)
    return _pickle_bytes(head)


def _pickle_bytes(head: bytes) -> bool:
    """A pickle stream (protocol 2-5), or a ``.npy`` array of Python objects."""
    if len(head) >= 2 and head[0] == 0x80 and 2 <= head[1] <= 5:
        return True
    return head.startswith(b"\x93NUMPY") and b"'descr': '|O'" in head


def _zip_holds_pickle(path: Path) -> bool:
    import zipfile

    try:
        with zipfile.ZipFile(path) as archive:
            for name in archive.namelist()[:10_000]:
                if name.endswith((".pkl", ".pickle")):
                    return True  # torch.save's zip format (data.pkl inside)
                if name.endswith(".npy"):
                    with archive.open(name) as member:
                        if _pickle_bytes(member.read(512)):
                            return True
    except (zipfile.BadZipFile, OSError, ValueError):
        return False
    return False


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
    """Appends chunks to a staging pack file; seals full packs in the background."""

    def __init__(self, backend: Backend, index: ChunkIndex, stats: PushStats) -> None:
        self.backend = backend
        self.index = index
        self.stats = stats
        self.sealer = ThreadPoolExecutor(max_workers=2, thread_name_prefix="llmops-seal")
        self.pending: list[Future[None]] = []
        self._open()

    def _open(self) -> None:
        self.pack_id = uuid.uuid4().hex
        fd, name = tempfile.mkstemp(dir=self.backend.staging_dir(), prefix="pack-")
        self.path = Path(name)
        self.fh = os.fdopen(fd, "wb")
        self.entries: list[PackEntry] = []
        self.size = 0

    def add(self, digest: str, stored: bytes | memoryview, codec: str, raw_length: int) -> None:
        self.fh.write(stored)
        self.entries.append(PackEntry(digest, self.size, len(stored), raw_length, codec))
        self.size += len(stored)
        self.stats.bytes_stored += len(stored)
        if self.size >= PACK_TARGET:
            self.seal()

    def seal(self) -> None:
        self.fh.close()
        if not self.entries:
            self.path.unlink(missing_ok=True)
            self._open()
            return
        key = f"packs/{self.pack_id[:2]}/{self.pack_id}.pack"
        path, entries, size = self.path, self.entries, self.size
        self.stats.packs_written += 1
        # At most two seals in flight: bounds staging disk and memory.
        while len([f for f in self.pending if not f.done()]) >= 2:
            next(f for f in self.pending if not f.done()).result()
        self.pending.append(self.sealer.submit(self._store, key, path, entries, size))
        self._open()

    def _store(self, key: str, path: Path, entries: list[PackEntry], size: int) -> None:
        try:
            self.backend.put_file(key, path)
        finally:
            path.unlink(missing_ok=True)
        self.index.add_pack(key, size, entries, stored=lambda: self.backend.exists(key))

    def finish(self) -> None:
        self.seal()
        self.fh.close()
        self.path.unlink(missing_ok=True)
        try:
            for future in self.pending:
                future.result()
        finally:
            self.sealer.shutdown(wait=True)

    def abort(self) -> None:
        self.fh.close()
        self.path.unlink(missing_ok=True)
        self.sealer.shutdown(wait=True, cancel_futures=True)


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
    scanned = _scan(source, allow_pickle=allow_pickle)
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
                        _drain(window.pop(0), digests, writer, stats, progress)
                while window:
                    _drain(window.pop(0), digests, writer, stats, progress)
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
    scanned = _scan(source, allow_pickle=True, follow_links=True)
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
                out.append(hash_chunk(os.pread(fd, span.length, span.offset)))
        finally:
            os.close(fd)
        return out

    with ThreadPoolExecutor(workers or default_workers(), thread_name_prefix="llmops-hash") as pool:
        digests = list(pool.map(hashes, files))
    _remember(scanned, files, digests, known, cache)
    return _manifest(files, digests)


_ChunkResult = tuple[str, bytes | memoryview | None, str, int]


class _ChunkWorker:
    """Reads, hashes and (when asked) compresses one chunk; called from worker threads.

    Returns ``(digest, stored bytes or None when the store has it already, codec, raw length)``.
    """

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
        fd = os.open(f.path, os.O_RDONLY)
        try:
            data = os.pread(fd, span.length, span.offset)
        finally:
            os.close(fd)
        if len(data) != span.length:
            raise StoreError(f"{f.rel} changed while it was being pushed (it got shorter)")
        digest = hash_chunk(data)
        with self.lock:
            duplicate = digest in self.seen
            self.seen.add(digest)
        if duplicate:
            return digest, None, "", span.length
        pack = self.index.pack_of(digest)
        if pack is not None:
            with self.lock:
                self.reused_packs.add(pack)
            return digest, None, "", span.length
        if not self.compress_chunks:
            return digest, data, "raw", span.length
        stored, codec = compress(data)
        return digest, stored, codec, span.length


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
            raise StoreError(
                f"{rel} changed while it was being pushed", hint="push it again once it is written"
            )
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
    digests: list[list[str]],
    writer: _PackWriter,
    stats: PushStats,
    progress: Progress | None,
) -> None:
    file_no, chunk_no, future = item
    digest, stored, codec, raw_length = future.result()
    digests[file_no][chunk_no] = digest
    stats.chunks_total += 1
    if stored is not None:
        writer.add(digest, stored, codec, raw_length)
        stats.bytes_new += raw_length
        stats.chunks_new += 1
    if progress is not None:
        progress(raw_length)
