"""A local cache of file chunk digests, keyed by what ``stat`` says about the file.

Re-pushing a 100 GB model whose files did not change should not re-read 100 GB: like git's index,
the cache remembers each file's chunk list under its path, size, inode, mtime and ctime (in
nanoseconds). An entry is only written for files last modified more than ``RACY_SECONDS`` before
they were hashed, so a write landing in the same timestamp tick as the hashing can never be
mistaken for "unchanged". The cache lives in the workspace's ``.llmops`` folder (it describes
files on this machine) and is only an accelerator: a hit is used only when every chunk it names
is still in the store, and a corrupt or missing cache is simply a miss.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
from pathlib import Path

__all__ = ["RACY_SECONDS", "HashCache"]

RACY_SECONDS = 2.0


def _key(st: os.stat_result) -> tuple[int, int, int, int]:
    return (st.st_size, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


class HashCache:
    """``path -> [(digest, offset, length), ...]`` for files that have not changed since."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        try:
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS files (path TEXT PRIMARY KEY, size INTEGER,"
                " inode INTEGER, mtime_ns INTEGER, ctime_ns INTEGER, chunks TEXT)"
            )
        except sqlite3.DatabaseError:
            # A damaged cache is worth nothing: start over.
            self._db.close()
            path.unlink(missing_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
            self._db.execute(
                "CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER, inode INTEGER,"
                " mtime_ns INTEGER, ctime_ns INTEGER, chunks TEXT)"
            )

    def lookup(self, path: Path, st: os.stat_result) -> list[tuple[str, int, int]] | None:
        """The chunk list recorded for ``path`` if the file is unchanged, else None."""
        with self._lock:
            try:
                row = self._db.execute(
                    "SELECT size, inode, mtime_ns, ctime_ns, chunks FROM files WHERE path = ?",
                    (str(path),),
                ).fetchone()
            except sqlite3.DatabaseError:
                return None
        if row is None or tuple(row[:4]) != _key(st):
            return None
        try:
            return [(str(d), int(o), int(n)) for d, o, n in json.loads(row[4])]
        except (ValueError, TypeError):
            return None

    def store(self, path: Path, st: os.stat_result, chunks: list[tuple[str, int, int]]) -> None:
        """Remember ``chunks`` for ``path`` as ``st`` described it when it was read."""
        if time.time() - st.st_mtime < RACY_SECONDS:
            return  # modified just now: a same-tick rewrite could go unnoticed
        with self._lock:
            try:
                self._db.execute(
                    "INSERT OR REPLACE INTO files VALUES (?, ?, ?, ?, ?, ?)",
                    (str(path), *_key(st), json.dumps(chunks)),
                )
                self._db.commit()
            except sqlite3.DatabaseError:
                pass  # an accelerator only

    def close(self) -> None:
        """Close the cache database."""
        self._db.close()
