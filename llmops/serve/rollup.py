"""Per-minute rollups of the gateway's request log, and per-arm numbers read from them.

Every batch of request rows the gateway writes also adds, in the same transaction, to two
rollup tables keyed by logical model, arm and minute: ``serve_rollup`` (requests, errors,
failovers, tokens per model) and ``serve_latency_bucket`` (a log-spaced latency histogram of the
answered requests, 5% wide buckets). Additions are upserts (``count = count + new``), sorted by
key so concurrent replicas take their row locks in one order.

A window's numbers (:func:`arm_window`) sum the rollups of the whole minutes inside it and read
the raw rows only for the partial minutes at its edges, so the cost of an analysis grows with
the window's minutes, not its requests. Percentiles and "slower than" counts come from the
histogram: within 5% of the exact value, and a "slower than" count never counts a request that
was not slower (a bucket counts only once its lower edge passes the threshold).

Each arm is judged on its own traffic: a stable row that answered for a failed candidate
(``failover``) is left out of the stable arm's numbers (the candidate's failed attempt counts as
its error).
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, not_, or_, select
from sqlmodel import col

from llmops.db.models import ServeFeedback, ServeLatencyBucket, ServeRequest, ServeRollup
from llmops.db.timestamps import as_utc
from llmops.serve.records import ArmStats

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection
    from sqlalchemy.orm import Session

    from llmops.db import Database

__all__ = ["ArmWindow", "arm_stats", "arm_window", "bucket_of", "feedback_votes", "write_rollups"]

_BASE = 1.05
_LOG_BASE = math.log(_BASE)


def bucket_of(latency_ms: float) -> int:
    """The histogram bucket of a latency: ``[1.05**b, 1.05**(b + 1))`` ms."""
    return math.floor(math.log(max(latency_ms, 0.001)) / _LOG_BASE)


def _lower(bucket: int) -> float:
    return float(_BASE**bucket)


def _minute(at: datetime) -> datetime:
    return as_utc(at).replace(second=0, microsecond=0)


def _counted(row: dict[str, Any]) -> bool:
    return not (row["arm"] == "stable" and row.get("failover"))


def write_rollups(
    session: Session | Connection, rows: Iterable[dict[str, Any]], dialect: str
) -> None:
    """Add request ``rows`` (as the request log writes them) to the rollups, in ``session``'s
    transaction."""
    totals: dict[tuple[str, str, str, datetime], list[int]] = defaultdict(lambda: [0] * 5)
    buckets: Counter[tuple[str, str, datetime, int]] = Counter()
    for row in rows:
        if not _counted(row):
            continue
        minute = _minute(row["at"])
        t = totals[(row["logical"], row["arm"], row["model"], minute)]
        t[0] += 1
        t[1] += bool(row["error"])
        t[2] += bool(row.get("failover"))
        t[3] += int(row.get("prompt_tokens") or 0)
        t[4] += int(row.get("completion_tokens") or 0)
        if not row["error"]:
            buckets[(row["logical"], row["arm"], minute, bucket_of(row["latency_ms"]))] += 1
    if not totals:
        return
    names = ("requests", "errors", "failovers", "prompt_tokens", "completion_tokens")
    _upsert(
        session,
        dialect,
        ServeRollup,
        [
            {
                "logical": k[0],
                "arm": k[1],
                "model": k[2],
                "minute": k[3],
                **dict(zip(names, v, strict=True)),
            }
            for k, v in sorted(totals.items())
        ],
        keys=("logical", "arm", "model", "minute"),
        adds=names,
    )
    if buckets:
        _upsert(
            session,
            dialect,
            ServeLatencyBucket,
            [
                {"logical": k[0], "arm": k[1], "minute": k[2], "bucket": k[3], "count": n}
                for k, n in sorted(buckets.items())
            ],
            keys=("logical", "arm", "minute", "bucket"),
            adds=("count",),
        )


def _upsert(
    session: Session | Connection,
    dialect: str,
    table: Any,
    rows: list[dict[str, Any]],
    *,
    keys: tuple[str, ...],
    adds: tuple[str, ...],
) -> None:
    from sqlalchemy.dialects import postgresql, sqlite

    insert: Any = postgresql.insert if dialect == "postgresql" else sqlite.insert
    stmt = insert(table.__table__)
    stmt = stmt.on_conflict_do_update(
        index_elements=list(keys),
        set_={name: table.__table__.c[name] + stmt.excluded[name] for name in adds},
    )
    session.execute(stmt, rows)


@dataclass(slots=True)
class _Agg:
    requests: int = 0
    errors: int = 0
    failovers: int = 0
    completion_tokens: int = 0
    models: set[str] = field(default_factory=set)
    histogram: Counter[int] = field(default_factory=Counter)
    by_model: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0]))
    """Model version -> [requests, errors]."""


@dataclass(frozen=True, slots=True)
class ArmWindow:
    """One arm's numbers in a window, with its latency histogram."""

    stats: ArmStats
    histogram: dict[int, int]
    """Answered requests per latency bucket (see :func:`bucket_of`)."""
    by_model: dict[str, tuple[int, int]] = field(default_factory=dict)
    """Model version -> (requests, errors): the arm's numbers per version (a bandit's)."""

    @property
    def answered(self) -> int:
        """Requests that did not fail (those the histogram holds)."""
        return sum(self.histogram.values())

    def slower_than(self, threshold_ms: float) -> int:
        """Answered requests surely slower than ``threshold_ms`` (their whole bucket is)."""
        return sum(n for b, n in self.histogram.items() if _lower(b) >= threshold_ms)


def _percentile(histogram: Counter[int], q: float) -> float | None:
    total = sum(histogram.values())
    if not total:
        return None
    rank = min(total - 1, max(0, round(q * (total - 1))))
    seen = 0
    for bucket in sorted(histogram):
        seen += histogram[bucket]
        if seen > rank:
            return round(math.sqrt(_lower(bucket) * _lower(bucket + 1)), 3)
    return None  # pragma: no cover - the loop always reaches the rank


def _ceil_minute(at: datetime) -> datetime:
    floor = _minute(at)
    return floor if floor == as_utc(at) else floor + timedelta(minutes=1)


def arm_window(
    db: Database, logical: str, *, since: datetime | None = None, until: datetime | None = None
) -> dict[str, ArmWindow]:
    """Per-arm numbers of ``logical`` in ``[since, until)`` from every replica's requests:
    whole minutes from the rollups, the partial minutes at the edges from the raw rows."""
    aggs: dict[str, _Agg] = defaultdict(_Agg)
    first = _ceil_minute(since) if since is not None else None
    last = _minute(until) if until is not None else None
    with db.read(snapshot=True) as session:  # rollups, buckets and rows agree
        if first is None or last is None or first < last:
            _from_rollups(session, logical, first, last, aggs)
            edges: list[tuple[datetime | None, datetime | None]] = []
            if since is not None and first is not None and since < first:
                edges.append((since, first))
            if until is not None and last is not None and last < until:
                edges.append((last, until))
        else:  # the window lies inside one minute
            edges = [(since, until)]
        for begin, end in edges:
            _from_rows(session, logical, begin, end, aggs)
        feedback = feedback_votes(session, logical, since, until)
    out = {}
    for arm, a in sorted(aggs.items()):
        votes, total = feedback.get(arm, (0, 0.0))
        mean = round(total / votes, 4) if votes else None
        out[arm] = ArmWindow(
            stats=ArmStats(
                arm=arm,
                requests=a.requests,
                errors=a.errors,
                failovers=a.failovers,
                p50_ms=_percentile(a.histogram, 0.5),
                p95_ms=_percentile(a.histogram, 0.95),
                completion_tokens=a.completion_tokens,
                feedback=votes,
                feedback_mean=mean,
                models=sorted(a.models),
            ),
            histogram=dict(a.histogram),
            by_model={m: (n, e) for m, (n, e) in a.by_model.items()},
        )
    return out


def arm_stats(
    db: Database, logical: str, *, since: datetime | None = None, until: datetime | None = None
) -> dict[str, ArmStats]:
    """Per-arm numbers of ``logical`` (``since``/``until``: only requests in that window)."""
    return {arm: w.stats for arm, w in arm_window(db, logical, since=since, until=until).items()}


def _from_rollups(
    session: Session,
    logical: str,
    first: datetime | None,
    last: datetime | None,
    aggs: dict[str, _Agg],
) -> None:
    where = [col(ServeRollup.logical) == logical]
    bwhere = [col(ServeLatencyBucket.logical) == logical]
    if first is not None:
        where.append(col(ServeRollup.minute) >= first)
        bwhere.append(col(ServeLatencyBucket.minute) >= first)
    if last is not None:
        where.append(col(ServeRollup.minute) < last)
        bwhere.append(col(ServeLatencyBucket.minute) < last)
    for arm, model, n, errors, failovers, tokens in session.execute(
        select(
            col(ServeRollup.arm),
            col(ServeRollup.model),
            func.sum(col(ServeRollup.requests)),
            func.sum(col(ServeRollup.errors)),
            func.sum(col(ServeRollup.failovers)),
            func.sum(col(ServeRollup.completion_tokens)),
        )
        .where(*where)
        .group_by(col(ServeRollup.arm), col(ServeRollup.model))
    ).all():
        a = aggs[arm]
        a.requests += int(n or 0)
        a.errors += int(errors or 0)
        a.failovers += int(failovers or 0)
        a.completion_tokens += int(tokens or 0)
        a.models.add(model)
        a.by_model[model][0] += int(n or 0)
        a.by_model[model][1] += int(errors or 0)
    for arm, bucket, n in session.execute(
        select(
            col(ServeLatencyBucket.arm),
            col(ServeLatencyBucket.bucket),
            func.sum(col(ServeLatencyBucket.count)),
        )
        .where(*bwhere)
        .group_by(col(ServeLatencyBucket.arm), col(ServeLatencyBucket.bucket))
    ).all():
        aggs[arm].histogram[int(bucket)] += int(n or 0)


def _from_rows(
    session: Session,
    logical: str,
    begin: datetime | None,
    end: datetime | None,
    aggs: dict[str, _Agg],
) -> None:
    where = [
        col(ServeRequest.logical) == logical,
        or_(col(ServeRequest.arm) != "stable", not_(col(ServeRequest.failover))),
    ]
    if begin is not None:
        where.append(col(ServeRequest.at) >= begin)
    if end is not None:
        where.append(col(ServeRequest.at) < end)
    for arm, model, error, failover, tokens, latency in session.execute(
        select(
            col(ServeRequest.arm),
            col(ServeRequest.model),
            col(ServeRequest.error),
            col(ServeRequest.failover),
            col(ServeRequest.completion_tokens),
            col(ServeRequest.latency_ms),
        ).where(*where)
    ).all():
        a = aggs[arm]
        a.requests += 1
        a.errors += bool(error)
        a.failovers += bool(failover)
        a.completion_tokens += int(tokens or 0)
        a.models.add(model)
        a.by_model[model][0] += 1
        a.by_model[model][1] += bool(error)
        if not error:
            a.histogram[bucket_of(latency)] += 1


def feedback_votes(
    session: Session,
    logical: str,
    since: datetime | None,
    until: datetime | None = None,
    *,
    by: str = "arm",
) -> dict[str, tuple[int, float]]:
    """Feedback on ``logical`` in the window, one vote per response (a later one replaces the
    earlier), grouped ``by`` arm or model: ``{key: (votes, sum of scores)}``."""
    key = col(ServeFeedback.arm) if by == "arm" else col(ServeFeedback.model)
    where = [col(ServeFeedback.logical) == logical]
    if since is not None:
        where.append(col(ServeFeedback.at) >= since)
    if until is not None:
        where.append(col(ServeFeedback.at) < until)
    latest = (
        select(func.max(col(ServeFeedback.id)))
        .where(*where)
        .group_by(col(ServeFeedback.response_id))
    )
    rows = session.execute(
        select(key, func.count(), func.sum(col(ServeFeedback.score)))
        .where(col(ServeFeedback.id).in_(latest))
        .group_by(key)
    ).all()
    return {k: (int(n or 0), float(total or 0.0)) for k, n, total in rows}
