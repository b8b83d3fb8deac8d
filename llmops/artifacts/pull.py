"""Pulling a version's files out of a store: verified, and all or nothing for the destination.

Every manifest path is checked before anything is written. Chunks are fetched, decompressed and
verified in parallel into a staging tree beside the destination, which is swapped in whole (two
renames) only once every file is complete and synced: a reader of the destination sees the old
tree or the new one, never a mix, whenever the pull is killed.
"""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from llmops.artifacts._index import ChunkIndex, ChunkLocation
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
    locations: dict[str, ChunkLocation] = field(default_factory=dict)


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
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
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
    """Workers fetch, decompress and verify chunks in parallel; this thread writes them in file
    order with plain sequential writes (measured: concurrent ``pwrite`` into one file ran at
    half the speed of sequential writes on this machine's ext4)."""

    def fetch(target: _Target, chunk: ChunkRef) -> bytes:
        location = locations.get(chunk.digest)
        problem = None
        if location is None:
            problem = MISSING_CHUNK
        else:
            try:
                return read_chunk(backend, location, chunk.digest)
            except ValueError as exc:
                problem = f"is corrupt ({exc})"
            except StoreError as exc:
                problem = f"cannot be read ({exc.message})"
        found = ChunkProblem(
            target.entry.path,
            chunk.offset,
            chunk.offset + chunk.length,
            chunk.digest,
            problem,
            location.pack_key if location else None,
        )
        raise StoreError(str(found), hint="run `llmops artifacts verify` for the full list")

    def write(item: tuple[_Target, Future[bytes]]) -> None:
        target, future = item
        data = future.result()
        view = memoryview(data)
        while view:
            view = view[os.write(target.fd, view) :]
        if progress is not None:
            progress(len(data))

    with ThreadPoolExecutor(workers, thread_name_prefix="llmops-pull") as pool:
        # A bounded window of chunks in flight keeps memory flat whatever the artifact's size.
        window: list[tuple[_Target, Future[bytes]]] = []
        try:
            for target in targets:
                for chunk in target.entry.chunks:
                    window.append((target, pool.submit(fetch, target, chunk)))
                    if len(window) >= 2 * workers:
                        write(window.pop(0))
            while window:
                write(window.pop(0))
        except BaseException:
            for _, future in window:
                future.cancel()
            raise
