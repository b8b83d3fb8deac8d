"""Files written all or nothing: a temporary file beside the target, flushed to disk, renamed
over it. A reader sees the old file or the new one, never half of one; a failure leaves no
temporary file behind."""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_atomic"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``target``; written there, it replaces ``target`` when the block
    ends without an error (fsynced first). A symlink keeps pointing where it did (the file it
    names is replaced); a device or pipe (``/dev/stdout``) is written directly, never replaced.

    Raises:
        IsADirectoryError: ``target`` is a folder.
    """
    final = Path(target)
    try:
        mode: int | None = final.stat().st_mode  # through links
    except FileNotFoundError:
        mode = None
    if mode is not None and stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{target} is a directory")
    if mode is not None and not stat.S_ISREG(mode):  # a device or a pipe: nothing to swap
        yield final
        return
    if final.is_symlink():
        final = final.resolve()
    fd, name = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as fh:
            os.fsync(fh.fileno())
        tmp.replace(final)
    finally:
        tmp.unlink(missing_ok=True)


def write_atomic(target: str | os.PathLike[str], pieces: Iterable[str]) -> Path:
    """Write text ``pieces`` to ``target`` all or nothing (UTF-8)."""
    with atomic_path(target) as tmp, tmp.open("w", encoding="utf-8") as fh:
        for piece in pieces:
            fh.write(piece)
    return Path(target)
