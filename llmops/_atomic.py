"""Files written all or nothing: a temporary file beside the target, flushed to disk, renamed
over it. A reader sees the old file or the new one, never half of one; a failure leaves no
temporary file behind."""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path

__all__ = ["atomic_path", "write_atomic"]


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``target``; written there, it replaces ``target`` when the block
    ends without an error (fsynced first)."""
    final = Path(target)
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
