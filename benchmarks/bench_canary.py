"""Canary analysis benchmark (issue: canaries). Run: python benchmarks/bench_canary.py

Seeds a registry (SQLite; or PostgreSQL: --db-url URL of an empty database) with a running
canary and N recorded gateway requests on its logical model (default 1,000,000, 10% on the
candidate, written in bulk as the gateway's request log writes them), then times the
controller's analysis of the current step (``analyse``: per-arm counts, errors, p50/p95, the
slow-share count and the confidence sequences, from the per-minute rollups plus the raw rows of
the step's first partial minute) over repeated evaluations. The requests span two hours. Goal: at most 100 ms
per evaluation. Options: --requests N, --repeat N, --db-url URL.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import numpy as np
from safetensors.numpy import save_file
from sqlalchemy import insert

from llmops import Workspace
from llmops.db.models import ServeRequest
from llmops.db.timestamps import utcnow
from llmops.serve.analysis import analyse
from llmops.serve.canary import CanarySpec
from llmops.serve.rollup import write_rollups


def write(ws: Workspace, batch: list[dict[str, object]]) -> None:
    with ws.db.write() as session:
        session.execute(insert(ServeRequest), batch)
        write_rollups(session, batch, ws.db.dialect)


def seed(ws: Workspace, n: int) -> None:
    root = ws.root / "m"
    for i, kind in enumerate(("adapter", "adapter")):
        folder = root / str(i)
        folder.mkdir(parents=True)
        save_file({"w": np.full((2, 2), i, dtype=np.float32)}, str(folder / "w.safetensors"))
        ws.artifacts.push(folder, name="lora", kind=kind)
    ws.serving.traffic.set("bot", stable="lora@1")
    ws.serving.backends.attach("lora@2", url="http://127.0.0.1:9/v1", served_name="lora-2")
    ws.serving.canaries.start("bot", candidate="lora@2", steps=[10, 100])
    # The requests of a busy two-hour step (about 140 a second), written as the gateway's
    # request log writes them: the rows and their per-minute rollups in one transaction.
    span = timedelta(hours=2)
    start = utcnow() - span
    rng = random.Random(0)
    batch = []
    for i in range(n):
        arm = "candidate" if rng.random() < 0.1 else "stable"
        batch.append(
            {
                "response_id": f"gw-{i:012d}",
                "logical": "bot",
                "arm": arm,
                "model": "lora@2" if arm == "candidate" else "lora@1",
                "at": start + span * (i / n),
                "status": 200,
                "error": rng.random() < 0.01,
                "failover": False,
                "latency_ms": rng.lognormvariate(3, 0.5),
                "ttft_ms": None,
                "prompt_tokens": 10,
                "completion_tokens": 20,
                "replica": "bench",
                "key_id": None,
            }
        )
        if len(batch) == 50_000:
            write(ws, batch)
            batch = []
    if batch:
        write(ws, batch)
    with ws.db.write() as session:  # the step began before the first row
        from llmops.db.models import CanaryRow

        row = session.get(CanaryRow, "bot")
        row.step_started_at = start - timedelta(seconds=1)
        session.add(row)


def measure(ws: Workspace, repeat: int) -> list[float]:
    row = ws.serving.canaries.row("bot")
    spec = CanarySpec(**row.spec)
    analyse(ws.serving, row, spec)  # warm-up
    samples = []
    for _ in range(repeat):
        t = time.perf_counter()
        analysis, arms = analyse(ws.serving, row, spec)
        samples.append((time.perf_counter() - t) * 1000)
    total = sum(a.requests for a in arms.values())
    print(f"  analysed {total:,} requests; decision inputs: {analysis['requests']}")
    return samples


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--requests", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--db-url", default=None, help="An empty PostgreSQL database.")
    args = parser.parse_args()
    targets = [("postgres", args.db_url)] if args.db_url else [("sqlite", None)]
    for name, url in targets:
        root = Path(tempfile.mkdtemp(prefix=f"bench-canary-{name}-"))
        if url:
            os.environ["LLMOPS_DB_URL"] = url
        else:
            os.environ.pop("LLMOPS_DB_URL", None)
        ws = Workspace.init(root / "ws", examples=False)
        t = time.perf_counter()
        seed(ws, args.requests)
        print(f"{name}: seeded {args.requests:,} requests in {time.perf_counter() - t:.0f} s")
        samples = measure(ws, args.repeat)
        print(
            f"  analysis per evaluation: median {statistics.median(samples):.0f} ms"
            f" (range {min(samples):.0f}-{max(samples):.0f}); goal <= 100 ms"
        )
        ws.close()


if __name__ == "__main__":
    main()
