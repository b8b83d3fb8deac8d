"""Gateway numbers: Prometheus counters and histograms per logical model and arm (this
replica's, in memory), and the per-request log every replica appends to the registry database
in batches (the source of the per-arm statistics the canary controller reads).

The hot path only appends to a list; a writer thread flushes it every ``flush_s`` seconds, so a
slow database never slows a request, and a crashed replica loses at most one interval.
"""

from __future__ import annotations

import bisect
import logging
import threading
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import insert

from llmops.db.models import ServeFeedback, ServeRequest, ShadowPair
from llmops.serve.rollup import write_rollups

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from llmops.db import Database

__all__ = ["BUCKETS_S", "Metrics", "RequestLog"]

log = logging.getLogger("llmops.gateway")

BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)
"""Latency histogram bucket bounds in seconds (Prometheus ``le``)."""


def _labels(names: tuple[str, ...], values: tuple[str, ...]) -> str:
    def esc(v: str) -> str:
        return v.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")

    return ",".join(f'{n}="{esc(v)}"' for n, v in zip(names, values, strict=True))


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS_S) + 1))
    total: float = 0.0
    n: int = 0

    def observe(self, seconds: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS_S, seconds)] += 1
        self.total += seconds
        self.n += 1


class Metrics:
    """This replica's Prometheus metrics (``GET /metrics``)."""

    _ARM = ("logical", "arm")

    def __init__(self) -> None:
        self.requests: defaultdict[tuple[str, str, str, str], int] = defaultdict(int)
        self.errors: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.failovers: defaultdict[tuple[str, str], int] = defaultdict(int)
        self.tokens: defaultdict[tuple[str, str, str], int] = defaultdict(int)
        self.latency: defaultdict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self.ttft: defaultdict[tuple[str, str], _Histogram] = defaultdict(_Histogram)
        self.rejected: defaultdict[str, int] = defaultdict(int)

    def observe(self, row: dict[str, Any]) -> None:
        """Count one answered request (a :class:`ServeRequest` row as a dict)."""
        arm = (row["logical"], row["arm"])
        self.requests[(*arm, row["model"], str(row["status"]))] += 1
        if row["error"]:
            self.errors[arm] += 1
        if row["failover"]:
            self.failovers[arm] += 1
        self.tokens[(*arm, "prompt")] += row["prompt_tokens"]
        self.tokens[(*arm, "completion")] += row["completion_tokens"]
        self.latency[arm].observe(row["latency_ms"] / 1000)
        if row["ttft_ms"] is not None:
            self.ttft[arm].observe(row["ttft_ms"] / 1000)

    def render(self) -> str:
        """The Prometheus text exposition format (version 0.0.4)."""
        out: list[str] = []

        def counter(name: str, help: str, series: dict[Any, int], names: tuple[str, ...]) -> None:
            out.append(f"# HELP {name} {help}")
            out.append(f"# TYPE {name} counter")
            for values, n in sorted(series.items()):
                key = values if isinstance(values, tuple) else (values,)
                out.append(f"{name}{{{_labels(names, key)}}} {n}")

        def histogram(name: str, help: str, series: dict[tuple[str, str], _Histogram]) -> None:
            out.append(f"# HELP {name} {help}")
            out.append(f"# TYPE {name} histogram")
            for values, h in sorted(series.items()):
                labels = _labels(self._ARM, values)
                running = 0
                for bound, n in zip((*BUCKETS_S, float("inf")), h.counts, strict=True):
                    running += n
                    le = "+Inf" if bound == float("inf") else repr(bound)
                    out.append(f'{name}_bucket{{{labels},le="{le}"}} {running}')
                out.append(f"{name}_sum{{{labels}}} {h.total:.6f}")
                out.append(f"{name}_count{{{labels}}} {h.n}")

        counter(
            "llmops_gateway_requests_total",
            "Requests answered, by logical model, arm, model version and HTTP status.",
            self.requests,
            ("logical", "arm", "model", "code"),
        )
        counter(
            "llmops_gateway_errors_total",
            "Requests that failed on their arm (5xx, unreachable or too slow).",
            self.errors,
            self._ARM,
        )
        counter(
            "llmops_gateway_failovers_total",
            "Candidate requests answered by the stable arm after the candidate failed.",
            self.failovers,
            self._ARM,
        )
        counter(
            "llmops_gateway_tokens_total",
            "Tokens by kind (prompt, completion).",
            self.tokens,
            ("logical", "arm", "kind"),
        )
        counter(
            "llmops_gateway_rejected_total",
            "Requests refused before routing, by reason.",
            self.rejected,
            ("reason",),
        )
        histogram("llmops_gateway_request_duration_seconds", "Time to the last byte.", self.latency)
        histogram(
            "llmops_gateway_time_to_first_token_seconds",
            "Streaming: time to the first byte of the answer.",
            self.ttft,
        )
        return "\n".join(out) + "\n"


class RequestLog:
    """Batches request rows, feedback and shadow pairs into the registry database."""

    def __init__(self, db: Database, *, flush_s: float = 0.5, max_pending: int = 100_000) -> None:
        self.db = db
        self.flush_s = flush_s
        self.max_pending = max_pending
        self._rows: dict[type[Any], list[dict[str, Any]]] = {
            ServeRequest: [],
            ServeFeedback: [],
            ShadowPair: [],
        }
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stopped = threading.Event()
        self.dropped = 0
        """Rows dropped because the database fell behind by ``max_pending``."""
        self._thread = threading.Thread(target=self._loop, name="llmops-request-log", daemon=True)
        self._thread.start()

    def add(self, table: type[Any], row: dict[str, Any]) -> None:
        """Queue one row for ``table`` (never blocks on the database)."""
        with self._lock:
            pending = self._rows[table]
            if len(pending) >= self.max_pending:
                self.dropped += 1
                return
            pending.append(row)

    def flush(self) -> None:
        """Write what is queued now."""
        with self._lock:
            batches = [(t, rows) for t, rows in self._rows.items() if rows]
            self._rows = {t: [] for t in self._rows}
        for table, rows in batches:
            try:
                with self.db.write() as session:
                    self._insert(session, table, rows)
            except Exception:  # one bad row must not take the others with it
                self._one_by_one(table, rows)

    def _insert(self, session: Session, table: type[Any], rows: list[dict[str, Any]]) -> None:
        session.execute(insert(table), rows)
        if table is ServeRequest:  # the rollups move with the rows, in one transaction
            write_rollups(session, rows, self.db.dialect)

    def _one_by_one(self, table: type[Any], rows: list[dict[str, Any]]) -> None:
        lost = 0
        for row in rows:
            try:
                with self.db.write() as session:
                    self._insert(session, table, [row])
            except Exception as exc:  # the gateway keeps answering; the row is lost, loudly
                lost += 1
                last = exc
        if lost:
            self.dropped += lost
            log.error("request log: %d %s rows not written: %s", lost, table.__tablename__, last)

    def _loop(self) -> None:
        while not self._stopped.is_set():
            self._wake.wait(self.flush_s)
            self.flush()

    def close(self) -> None:
        """Flush and stop the writer."""
        self._stopped.set()
        self._wake.set()
        self._thread.join(10)
        self.flush()
