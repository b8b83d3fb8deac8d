"""Hashing and copying byte ranges of files without passing the bytes through Python objects.

Measured on the project's 2-core machine (shared/DESIGN.md, benchmarks/README.md): for 1.2 GB,
a Python loop of 16 MiB ``read``/``write`` + fsync took 3.0-3.3 s where ``os.copy_file_range``
+ fsync took 0.6-0.8 s, the speed of ``cp``. Every chunk read into a fresh ``bytes`` costs a
16 MiB allocation (page faults, zeroing) and two copies; here copying is the kernel's, and
hashing reads either a memory map (:func:`hash_range`, for files llmops itself writes: packs
being sealed, files being pulled) or a reused per-thread buffer (:func:`hash_read`, for a
user's source files: a memory map of a file that another process truncates kills the reader
with SIGBUS, which Python cannot catch, where a read just comes back short).

:func:`copy_range` uses ``copy_file_range`` (an in-kernel copy, or a reflink where the
filesystem shares extents), falls back to ``sendfile`` where the kernel or filesystem refuses
(across filesystems on some kernels), and to ``pread``/``pwrite`` as the last resort.
"""

from __future__ import annotations

import errno
import mmap
import os
import threading

import blake3

from llmops.errors import StoreError

__all__ = ["ShortSource", "copy_range", "hash_range", "hash_read", "write_at"]

_REFUSED = frozenset(
    {errno.EXDEV, errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP, errno.EBADF, errno.EPERM}
)
"""``copy_file_range``/``sendfile`` errors that mean "not between these two files", not a
failure of the disk: the next method is tried."""

_STEP = 8 * 1024 * 1024
"""Bytes per ``pread``/``pwrite`` in the last-resort copy."""


class ShortSource(StoreError):
    """The source ended before the range did (it got shorter while being read)."""


def hash_range(fd: int, offset: int, length: int) -> str:
    """BLAKE3 hex digest of ``length`` bytes of the open file ``fd`` from ``offset``, read
    through a read-only memory map (no copy into a Python object). Only for files no other
    process shortens (see the module doc); a filesystem that refuses shared maps is read with
    :func:`hash_read` instead.

    Raises:
        ShortSource: The file is shorter than ``offset + length``.
    """
    if length == 0:
        return blake3.blake3(b"").hexdigest()
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    if os.fstat(fd).st_size < offset + length:
        raise ShortSource(f"file ends before byte {offset + length}")
    try:
        mapped = mmap.mmap(fd, offset + length - start, offset=start, access=mmap.ACCESS_READ)
    except OSError:  # e.g. ENODEV: a FUSE mount with direct_io
        return hash_read(fd, offset, length)
    with mapped:
        view = memoryview(mapped)
        try:
            return blake3.blake3(view[offset - start :]).hexdigest()
        finally:
            view.release()


_BUFFER = 16 * 1024 * 1024
_LOCAL = threading.local()


def hash_read(fd: int, offset: int, length: int) -> str:
    """BLAKE3 hex digest of ``length`` bytes of ``fd`` from ``offset``, read with ``preadv``
    into this thread's reused 16 MiB buffer (no allocation per chunk).

    Raises:
        ShortSource: The file ends before ``offset + length`` (it may have been shortened
            while being read).
    """
    buffer: bytearray | None = getattr(_LOCAL, "buffer", None)
    if buffer is None:
        buffer = _LOCAL.buffer = bytearray(_BUFFER)
    view = memoryview(buffer)
    hasher = blake3.blake3()
    done = 0
    while done < length:
        want = min(_BUFFER, length - done)
        got = os.preadv(fd, [view[:want]], offset + done)
        if got == 0:
            raise ShortSource(f"file ends at byte {offset + done}, before {offset + length}")
        hasher.update(view[:got])
        done += got
    return hasher.hexdigest()


def write_at(fd: int, data: bytes | memoryview, offset: int) -> None:
    """Write all of ``data`` into ``fd`` at ``offset`` (the file position is not used)."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        done += os.pwrite(fd, view[done:], offset + done)


def copy_range(src_fd: int, dst_fd: int, length: int, *, src_offset: int, dst_offset: int) -> None:
    """Copy ``length`` bytes of ``src_fd`` from ``src_offset`` into ``dst_fd`` at ``dst_offset``.

    Neither file's position is used or moved, except by the ``sendfile`` fallback (which writes
    at ``dst_fd``'s position, set first).

    Raises:
        ShortSource: The source ends before ``src_offset + length``.
        OSError: The destination's disk failed or is full (ENOSPC).
    """
    done = 0
    try:
        while done < length:
            n = os.copy_file_range(
                src_fd, dst_fd, length - done, src_offset + done, dst_offset + done
            )
            if n == 0:
                break  # the end, or a file the kernel cannot copy (some FUSE, procfs): see below
            done += n
        if done == length:
            return
    except OSError as exc:
        if exc.errno not in _REFUSED:
            raise
    try:
        os.lseek(dst_fd, dst_offset + done, os.SEEK_SET)
        while done < length:
            n = os.sendfile(dst_fd, src_fd, src_offset + done, length - done)
            if n == 0:
                raise ShortSource(f"source ends at byte {src_offset + done}")
            done += n
        return
    except OSError as exc:
        if exc.errno not in _REFUSED:
            raise
    while done < length:
        data = os.pread(src_fd, min(_STEP, length - done), src_offset + done)
        if not data:
            raise ShortSource(f"source ends at byte {src_offset + done}")
        write_at(dst_fd, data, dst_offset + done)
        done += len(data)
