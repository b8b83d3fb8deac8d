"""Per-minute rollups of the request log: any window's numbers match the raw rows (counts
exactly, percentiles within the 5% buckets, "slower than" never over-counting), concurrent
writers add up, and a database upgraded from before the rollups has them filled in."""

from __future__ import annotations

import random
import threading
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import delete, insert, select

from llmops.db import Database
from llmops.db.models import ServeLatencyBucket, ServeRequest, ServeRollup
from llmops.db.timestamps import utcnow
from llmops.serve.metrics import RequestLog
from llmops.serve.rollup import arm_window

T0 = utcnow().replace(second=0, microsecond=0) - timedelta(hours=1)


def _rows(n: int, seed: int, *, prefix: str = "r") -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(n):
        arm = rng.choice(["stable", "stable", "candidate"])
        out.append(
            {
                "response_id": f"{prefix}{seed}-{i}",
                "logical": "bot",
                "arm": arm,
                "model": "m@2" if arm == "candidate" else rng.choice(["m@1", "m@1b"]),
                "at": T0 + timedelta(seconds=rng.uniform(0, 600)),
                "status": 200,
                "error": rng.random() < 0.05,
                "failover": arm == "stable" and rng.random() < 0.03,
                "latency_ms": rng.lognormvariate(3, 0.7),
                "ttft_ms": None,
                "prompt_tokens": 3,
                "completion_tokens": rng.randrange(50),
                "replica": "t",
                "key_id": None,
            }
        )
    return out


def _exact(rows: list[dict[str, Any]], arm: str, since: datetime, until: datetime) -> Any:
    mine = [r for r in rows if r["arm"] == arm and since <= r["at"] < until
            and not (arm == "stable" and r["failover"])]  # fmt: skip
    ok = sorted(r["latency_ms"] for r in mine if not r["error"])
    return mine, ok


@pytest.fixture
def db(db_url: str) -> Any:
    database = Database(db_url)
    yield database
    database.dispose()


def test_any_window_matches_the_raw_rows(db: Database) -> None:
    rows = _rows(3000, 1)
    log = RequestLog(db, flush_s=3600)
    for row in rows:
        log.add(ServeRequest, row)
    log.close()
    rng = random.Random(2)
    windows = [(T0 - timedelta(minutes=5), T0 + timedelta(hours=1)),  # every whole minute
               (T0 + timedelta(seconds=30), T0 + timedelta(seconds=50)),  # inside one minute
               (T0 + timedelta(seconds=59.5), T0 + timedelta(seconds=120.25))]  # fmt: skip
    for _ in range(6):
        a, b = sorted(rng.uniform(0, 600) for _ in range(2))
        windows.append((T0 + timedelta(seconds=a), T0 + timedelta(seconds=b)))
    for since, until in windows:
        got = arm_window(db, "bot", since=since, until=until)
        for arm in ("stable", "candidate"):
            mine, ok = _exact(rows, arm, since, until)
            if not mine:
                assert arm not in got
                continue
            w = got[arm]
            assert w.stats.requests == len(mine)
            assert w.stats.errors == sum(r["error"] for r in mine)
            assert w.stats.failovers == sum(r["failover"] for r in mine)
            assert w.stats.completion_tokens == sum(r["completion_tokens"] for r in mine)
            assert set(w.stats.models) == {r["model"] for r in mine}
            assert w.answered == len(ok)
            for q, value in ((0.5, w.stats.p50_ms), (0.95, w.stats.p95_ms)):
                exact = ok[round(q * (len(ok) - 1))]
                assert value is not None and abs(value - exact) <= 0.05 * exact
            threshold = ok[len(ok) // 2]
            slow = w.slower_than(threshold)
            assert sum(v > threshold * 1.05 for v in ok) <= slow <= sum(v > threshold for v in ok)


def test_concurrent_writers_add_up(db: Database) -> None:
    batches = [_rows(800, seed, prefix=f"w{seed}-") for seed in range(4)]

    def write(rows: list[dict[str, Any]]) -> None:
        log = RequestLog(db, flush_s=0.01)
        for i in range(0, len(rows), 50):
            for row in rows[i : i + 50]:
                log.add(ServeRequest, row)
            log.flush()
        log.close()

    threads = [threading.Thread(target=write, args=(b,)) for b in batches]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    rows = [r for b in batches for r in b]
    got = arm_window(db, "bot")
    for arm in ("stable", "candidate"):
        mine = [r for r in rows if r["arm"] == arm and not (arm == "stable" and r["failover"])]
        assert got[arm].stats.requests == len(mine)
        assert got[arm].answered == sum(not r["error"] for r in mine)


def test_a_row_the_database_refuses_leaves_no_rollup_behind(db: Database) -> None:
    rows = _rows(20, 3)
    log = RequestLog(db, flush_s=3600)
    for row in [*rows, dict(rows[0])]:  # the same response id twice: one insert fails
        log.add(ServeRequest, row)
    log.close()
    assert log.dropped == 1
    assert arm_window(db, "bot")["stable"].stats.requests + arm_window(db, "bot").get(
        "candidate"
    ).stats.requests == sum(1 for r in rows if not (r["arm"] == "stable" and r["failover"]))


def test_an_upgraded_database_has_its_requests_rolled_up(db: Database, db_url: str) -> None:
    from alembic import command
    from alembic.config import Config

    import llmops.db.migrations as migrations

    rows = _rows(500, 4)
    with db.write() as session:
        session.execute(insert(ServeRequest), rows)  # recorded before the rollups existed
        session.execute(delete(ServeRollup))
        session.execute(delete(ServeLatencyBucket))
    config = Config()
    config.set_main_option("script_location", str(Path(migrations.__file__).parent))
    with db.engine.begin() as conn:
        config.attributes["connection"] = conn
        command.downgrade(config, "0009")
    db.dispose()
    upgraded = Database(db_url)
    try:
        got = arm_window(upgraded, "bot")
        with upgraded.read() as session:
            assert session.scalars(select(ServeRollup)).first() is not None
    finally:
        upgraded.dispose()
    mine = [r for r in rows if r["arm"] == "candidate"]
    assert got["candidate"].stats.requests == len(mine)
    assert got["candidate"].answered == sum(not r["error"] for r in mine)
