"""The response cache: an identical model request is never paid for twice, across runs.

Keyed by BLAKE3 over the canonical JSON of the provider's identity (kind, endpoint, model, adapter),
the request (messages, temperature, max tokens, seed) and the sample number (so repeated judge
epochs are separate samples). Values are the completion's text, usage and cost. A local SQLite
file (WAL) in the workspace, ``.llmops/evalcache.db``; each answer is committed as it arrives, so a
run killed mid-way keeps every answer it paid for. Failed calls are never cached.
"""

from __future__ import annotations

import json
import math
import sqlite3
import threading
from pathlib import Path
from typing import Any

import blake3

from llmops.evals.providers import Completion, Request

__all__ = ["ResponseCache", "cache_key"]


def cache_key(provider_key: str, request: Request, sample: int = 0) -> str:
    """The cache key of a request to a provider."""
    payload = {"provider": provider_key, "request": request.to_json(), "sample": sample}
    canonical = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return blake3.blake3(canonical.encode()).hexdigest()


class ResponseCache:
    """Completions by cache key, in a SQLite file."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS response (key TEXT PRIMARY KEY, value TEXT NOT NULL)"
        )
        self.hits = 0
        self.misses = 0

    def get(self, key: str) -> Completion | None:
        """The cached completion (marked ``cached``), or None."""
        with self._lock:
            row = self._db.execute("SELECT value FROM response WHERE key = ?", (key,)).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        data: dict[str, Any] = json.loads(row[0])
        return Completion(
            text=data["text"],
            prompt_tokens=data["prompt_tokens"],
            completion_tokens=data["completion_tokens"],
            cost=data["cost"],
            latency_s=data["latency_s"],
            cached=True,
            choice_logprobs=tuple(
                -math.inf if x is None else float(x) for x in data.get("choice_logprobs", ())
            ),
        )

    def put(self, key: str, completion: Completion) -> None:
        """Remember a completion (committed at once)."""
        value = json.dumps(completion.to_json(), ensure_ascii=False)
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO response (key, value) VALUES (?, ?)", (key, value)
            )

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT count(*) FROM response").fetchone()[0])

    def close(self) -> None:
        """Close the file."""
        with self._lock:
            self._db.close()
