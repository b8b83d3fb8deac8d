"""Pulling a version's files out of a store: verified, and all or nothing for the destination.

Every manifest path is checked before anything is written. Chunks are written into a staging
tree beside the destination, which is swapped in whole (two renames) only once every file is
complete, verified and synced: a reader of the destination sees the old tree or the new one, never
a mix, whenever the pull is killed.

A chunk kept raw in a pack on local disk is copied by the kernel (``copy_file_range``, see
:mod:`llmops.artifacts._ranges`) and then hashed where it landed; other chunks (compressed, or in
an object store) are fetched, decompressed and verified by worker threads before they are written.
"""

from __future__ import annotations

import errno
import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from llmops.artifacts._index import ChunkIndex, ChunkLocation
from llmops.artifacts._ranges import ShortSource, copy_range, hash_range, write_at
from llmops.artifacts.backends import Backend, StoreError, _fsync
from llmops.artifacts.chunking import decompress, hash_chunk
from llmops.artifacts.manifest import ChunkRef, FileEntry, Manifest
from llmops.artifacts.tensors import UnsafeFileError
from llmops.artifacts.transfer import MISSING_CHUNK, Progress, check_relpath, default_workers
from llmops.errors import InputError

__all__ = ["ChunkProblem", "pull_files", "read_chunk"]


def read_chunk(backend: Backend, location: ChunkLocation, expected_digest: str) -> bytes:
    """Fetch, decompress and verify one chunk.

    Raises:
        StoreError: The pack is missing or truncated.
        ValueError: The chunk is corrupt (does not decompress or does not match its digest).
    """
    stored = backend.get_range(location.pack_key, location.offset, location.stored_length)
    raw = decompress(stored, location.codec, location.raw_length)
    if hash_chunk(raw) != expected_digest:
        raise ValueError("content does not match its BLAKE3 digest")
    return raw


@dataclass
class ChunkProblem:
    """A chunk that could not be read back intact."""

    path: str
    """The artifact file affected."""
    start: int
    """First byte of the file affected."""
    end: int
    """One past the last byte affected."""
    chunk: str
    """The chunk's digest."""
    problem: str
    """What is wrong."""
    pack: str | None = None
    """The pack object that should hold it."""

    def __str__(self) -> str:
        where = f" in {self.pack}" if self.pack else ""
        return (
            f"{self.path} bytes [{self.start}, {self.end}): chunk {self.chunk[:16]} {self.problem}"
            f"{where}"
        )


@dataclass
class _Target:
    entry: FileEntry
    tmp: Path
    fd: int = -1
    written: int = 0
    """Bytes written so far (chunks go in file order)."""


def pull_files(
    manifest: Manifest,
    dest: Path,
    *,
    backend: Backend,
    index: ChunkIndex,
    workers: int | None = None,
    progress: Progress | None = None,
) -> list[Path]:
    """Write the manifest's files under ``dest`` with their relative paths, all or nothing.

    The whole tree is written and verified in a staging folder next to ``dest``, then swapped
    in with two renames: a reader sees the old tree or the new one, never a mix, and a pull
    killed at any point leaves ``dest`` as it was (or, killed between the two renames, absent
    with both trees kept beside it: the next pull into ``dest`` puts the old one back first).
    Files of ``dest`` that the artifact does not have are kept (hard-linked into the new tree).
    Pulls into the same folder take turns (a lock on its parent). Into the current directory,
    the complete files are renamed into place one by one instead (a swap would leave the shell
    in a deleted folder).

    Raises:
        UnsafeFileError: A manifest path would escape ``dest``.
        InputError: ``dest`` (or a folder the artifact needs inside it) is a file.
        StoreError: A chunk is missing or corrupt (the message names the file and byte range).
    """
    dest = _absolute(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        if dest.is_symlink():
            dest = dest.resolve(strict=True)  # one real name: pulls through a link take turns
    except (OSError, RuntimeError) as exc:  # a file where a folder must be, a link loop ...
        raise InputError(
            f"cannot pull into {dest}: {exc.strerror if isinstance(exc, OSError) else exc}",
            hint="pull into a folder",
        ) from None
    with _pull_lock(dest.parent):
        _recover(dest)
        root = _checked_root(manifest, dest)
        locations = index.locate(c.digest for e in manifest.files for c in e.chunks)
        staging = root.parent / f".{root.name}.llmops-pull-{uuid.uuid4().hex[:12]}"
        staging.mkdir()
        targets: list[_Target] = []
        try:
            for entry in manifest.files:
                tmp = staging / entry.path
                tmp.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
                targets.append(_Target(entry, tmp, fd))
            _fetch_all(targets, locations, backend, workers or default_workers(), progress)
            for target in targets:
                _finish(target)
            if root.exists() and _holds_cwd(root):
                # Swapping the folder a shell (or this process) sits in would strand it in a
                # deleted directory: place the complete, verified files one by one instead.
                _place_each(staging, root, manifest)
            else:
                if root.exists():
                    _keep_others(root, staging, {e.path for e in manifest.files})
                _swap_in(staging, root)
            return [root / e.path for e in manifest.files]
        finally:
            for target in targets:
                if target.fd >= 0:
                    os.close(target.fd)
            shutil.rmtree(staging, ignore_errors=True)


def _absolute(dest: Path) -> Path:
    """``dest`` made absolute without resolving a link named as ``dest`` itself."""
    if dest.is_absolute():
        return dest
    try:
        return Path.cwd() / dest
    except FileNotFoundError:
        raise InputError(
            f"cannot pull into {dest}: the current directory no longer exists",
            hint="cd into an existing folder, or give an absolute destination",
        ) from None


@contextmanager
def _pull_lock(parent: Path) -> Iterator[None]:
    """Pulls into one folder take turns: a lock on the folder that holds it (an flock on the
    directory itself, so no lock file is left behind)."""
    import fcntl

    fd = os.open(parent, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # releases the lock


def _holds_cwd(root: Path) -> bool:
    try:
        here = Path.cwd().resolve()
    except FileNotFoundError:
        return False
    return here == root or root in here.parents


def _place_each(staging: Path, root: Path, manifest: Manifest) -> None:
    for entry in manifest.files:
        final = root / entry.path
        final.parent.mkdir(parents=True, exist_ok=True)
        if final.is_symlink() or final.is_dir():
            raise UnsafeFileError(f"{final} exists and is a link or folder; not replacing it")
        (staging / entry.path).replace(final)
    _fsync(root)


def _recover(dest: Path) -> None:
    """Clean up after killed pulls into ``dest`` (we hold its lock: none is running)."""
    parent = dest.parent
    olds = sorted(parent.glob(f".{dest.name}.llmops-old-*"))
    if olds and not dest.exists():
        olds[-1].rename(dest)  # killed between the two renames: the old tree goes back
        olds = olds[:-1]
    for leftover in [*olds, *parent.glob(f".{dest.name}.llmops-pull-*")]:
        if leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
    if dest.is_dir() and not dest.is_symlink():
        for inner in dest.glob(".llmops-pull-*"):  # staging folders of older llmops versions
            if inner.is_dir() and not inner.is_symlink():
                shutil.rmtree(inner, ignore_errors=True)


def _finish(target: _Target) -> None:
    os.fchmod(target.fd, target.entry.mode)
    os.fsync(target.fd)
    os.close(target.fd)
    target.fd = -1


def _keep_others(root: Path, staging: Path, ours: set[str]) -> None:
    """Hard-link the files of ``root`` that the artifact does not have into the new tree."""
    for folder, dirs, files in os.walk(root):
        here = Path(folder)
        links = [d for d in dirs if (here / d).is_symlink()]
        dirs[:] = [d for d in dirs if d not in links]
        for name in files + links:
            path = here / name
            rel = path.relative_to(root).as_posix()
            target = staging / rel
            if rel in ours or target.exists() or target.is_symlink():
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            try:
                os.link(path, target, follow_symlinks=False)
            except OSError:
                shutil.copy2(path, target, follow_symlinks=False)
        for d in dirs:  # empty folders too
            (staging / here.relative_to(root) / d).mkdir(parents=True, exist_ok=True)


def _swap_in(staging: Path, root: Path) -> None:
    try:
        here: Path | None = Path.cwd()
    except FileNotFoundError:
        here = None
    if root.exists():
        old = root.parent / f".{root.name}.llmops-old-{uuid.uuid4().hex[:12]}"
        root.rename(old)
        staging.rename(root)
        _fsync(root.parent)
        shutil.rmtree(old, ignore_errors=True)
    else:
        staging.rename(root)
        _fsync(root.parent)
    if here is not None and (here == root or root in here.parents):
        os.chdir(here)  # this process was inside the old tree: step into the new one


def _checked_root(manifest: Manifest, dest: Path) -> Path:
    for entry in manifest.files:
        check_relpath(entry.path)
    if dest.exists() and not dest.is_dir():
        raise InputError(f"cannot pull into {dest}: it is a file", hint="pull into a folder")
    try:
        root = dest.resolve(strict=False)
    except (OSError, RuntimeError) as exc:  # a link loop, an unreadable parent
        raise InputError(f"cannot pull into {dest}: {exc}", hint="pull into a folder") from None
    for entry in manifest.files:
        name = entry.path.rsplit("/", 1)[-1].lower()
        if name == "llmops.toml" and (root / entry.path).exists():
            raise UnsafeFileError(
                f"cannot pull into {dest}: the artifact would replace the llmops.toml of a"
                f" workspace ({entry.path})",
                hint="pull into a folder that holds no workspace (e.g. models/NAME)",
            )
    for entry in manifest.files:
        final = root / entry.path
        if root not in final.resolve().parents:
            raise UnsafeFileError(f"path {entry.path!r} would be written outside {dest}")
        # Refuse before fetching anything, so a conflict never costs a download.
        for parent in reversed(final.relative_to(root).parents[:-1]):
            if (root / parent).exists() and not (root / parent).is_dir():
                raise InputError(
                    f"cannot pull {entry.path!r} into {dest}: {parent} is a file there",
                    hint="pull into an empty folder",
                )
        if final.is_symlink() or final.is_dir():
            raise UnsafeFileError(f"{final} exists and is a link or folder; not replacing it")
    return root


def _fetch_all(
    targets: list[_Target],
    locations: dict[str, ChunkLocation],
    backend: Backend,
    workers: int,
    progress: Progress | None,
) -> None:
    """Write every chunk into its file, in file order, from this thread (measured: concurrent
    ``pwrite`` into one file ran at half the speed of sequential writes on this machine's ext4).

    A raw chunk in a local pack is copied here by the kernel and hashed where it landed by a
    worker; any other chunk is fetched, decompressed and verified by a worker first. Both kinds
    of work run in a bounded window, so memory stays flat whatever the artifact's size.
    """
    with ThreadPoolExecutor(workers, thread_name_prefix="llmops-pull") as pool:
        run = _Fetch(locations, backend, pool, 2 * workers, progress)
        try:
            for target in targets:
                for chunk in target.entry.chunks:
                    run.add(target, chunk)
            run.drain()
        except BaseException:
            run.cancel()
            raise
        finally:
            run.packs.close()


class _Fetch:
    """The chunks of one pull in flight (see :func:`_fetch_all`)."""

    def __init__(
        self,
        locations: dict[str, ChunkLocation],
        backend: Backend,
        pool: ThreadPoolExecutor,
        limit: int,
        progress: Progress | None,
    ) -> None:
        self.locations = locations
        self.backend = backend
        self.pool = pool
        self.limit = limit
        self.progress = progress
        self.packs = _PackFiles(backend)
        self.window: list[tuple[_Target, ChunkRef, Future[bytes] | None]] = []
        self.checks: list[Future[None]] = []

    def add(self, target: _Target, chunk: ChunkRef) -> None:
        location = self.locations.get(chunk.digest)
        if (
            location is not None
            and location.raw_length == chunk.length
            and self.packs.local(location)
        ):
            self.window.append((target, chunk, None))  # copied when its turn comes
        else:
            self.window.append((target, chunk, self.pool.submit(self._fetch, target, chunk)))
        if len(self.window) >= self.limit:
            self._advance()

    def drain(self) -> None:
        while self.window:
            self._advance()
        for checking in self.checks:
            checking.result()

    def cancel(self) -> None:
        for *_, fetching in self.window:
            if fetching is not None:
                fetching.cancel()
        for checking in self.checks:
            checking.cancel()

    def _advance(self) -> None:
        target, chunk, fetching = self.window.pop(0)
        if fetching is not None:
            self._write(target, fetching.result())
        else:
            offset = self._copy(target, chunk, self.locations[chunk.digest])
            self.checks.append(self.pool.submit(self._check, target, chunk, offset))
            if len(self.checks) >= self.limit:
                self.checks.pop(0).result()
        if self.progress is not None:
            self.progress(chunk.length)

    def _failed(self, target: _Target, chunk: ChunkRef, problem: str) -> StoreError:
        location = self.locations.get(chunk.digest)
        found = ChunkProblem(
            target.entry.path,
            chunk.offset,
            chunk.offset + chunk.length,
            chunk.digest,
            problem,
            location.pack_key if location else None,
        )
        return StoreError(str(found), hint="run `llmops artifacts verify` for the full list")

    def _fetch(self, target: _Target, chunk: ChunkRef) -> bytes:
        location = self.locations.get(chunk.digest)
        if location is None:
            raise self._failed(target, chunk, MISSING_CHUNK)
        try:
            return read_chunk(self.backend, location, chunk.digest)
        except ValueError as exc:
            raise self._failed(target, chunk, f"is corrupt ({exc})") from None
        except StoreError as exc:
            raise self._failed(target, chunk, f"cannot be read ({exc.message})") from None

    def _copy(self, target: _Target, chunk: ChunkRef, location: ChunkLocation) -> int:
        """Copy a raw chunk from its pack; the offset it landed at."""
        offset = target.written
        key, store = location.pack_key, self.backend.url
        try:
            source = self.packs.fd(key)
        except FileNotFoundError:
            raise self._failed(target, chunk, f"cannot be read (object {key} is missing from"
                               f" store {store})") from None  # fmt: skip
        except OSError as exc:
            raise self._failed(target, chunk, f"cannot be read (object {key} in store {store}:"
                               f" {exc.strerror})") from None  # fmt: skip
        try:
            copy_range(
                source, target.fd, location.raw_length, src_offset=location.offset,
                dst_offset=offset,
            )  # fmt: skip
        except ShortSource:
            raise self._failed(target, chunk, f"cannot be read (object {key} in store {store} is"
                               " truncated)") from None  # fmt: skip
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                raise  # the destination's disk, not the store
            raise self._failed(target, chunk, f"cannot be read (object {key} in store {store}:"
                               f" {exc.strerror})") from None  # fmt: skip
        target.written += location.raw_length
        return offset

    def _check(self, target: _Target, chunk: ChunkRef, offset: int) -> None:
        if hash_range(target.fd, offset, chunk.length) != chunk.digest:
            problem = "is corrupt (content does not match its BLAKE3 digest)"
            raise self._failed(target, chunk, problem)

    def _write(self, target: _Target, data: bytes) -> None:
        write_at(target.fd, data, target.written)
        target.written += len(data)


class _PackFiles:
    """Open pack files of a local store, the few most recent kept open (chunks of one file
    mostly come from the same packs, in order)."""

    KEEP = 16

    def __init__(self, backend: Backend) -> None:
        self.backend = backend
        self.open: dict[str, int] = {}

    def local(self, location: ChunkLocation) -> bool:
        """Whether the kernel can copy this chunk: stored raw, in a file on this machine."""
        return location.codec == "raw" and self.backend.local_file(location.pack_key) is not None

    def fd(self, key: str) -> int:
        found = self.open.pop(key, None)
        if found is None:
            path = self.backend.local_file(key)
            assert path is not None
            found = os.open(path, os.O_RDONLY)
            if len(self.open) >= self.KEEP:
                os.close(self.open.pop(next(iter(self.open))))
        self.open[key] = found  # most recent last
        return found

    def close(self) -> None:
        for fd in self.open.values():
            os.close(fd)
        self.open.clear()
