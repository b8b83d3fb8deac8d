"""Model registry benchmarks (issue: model registry). Run: python benchmarks/bench_registry.py

Seeds a registry (SQLite, and PostgreSQL when LLMOPS_TEST_POSTGRES_URL is set) with 1,000
models x 100 versions = 100,000 model versions, 10,000 audited alias moves and one eval run per
model indexed as evidence, with rows written in bulk (as the registry writes them, minus the
per-row transactions), then times p50 over repeated calls:
  1. ``ws.models.list()`` (1,000 models with their aliases);
  2. ``ws.models.show(name@v)`` of random versions;
  3. alias resolution ``ws.artifacts.get(name@production)``;
  4. ``ws.lineage(name@v)``;
  5. ``ws.models.promote(name@v, production, dry_run=True)`` with a policy whose eval
     condition has evidence in the database.
Goals: 1-4 at most 20 ms p50, 5 at most 50 ms p50. Options: --models N, --versions N,
--moves N, --repeat N, --skip-postgres.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from llmops import Workspace
from llmops.db.models import (
    Artifact,
    ArtifactAlias,
    ArtifactVersionRow,
    AuditEvent,
    EvalRun,
    EvalTarget,
)
from llmops.db.timestamps import utcnow


def _p50(fn: Any, n: int) -> tuple[float, float]:
    samples = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - t)
    samples.sort()
    return statistics.median(samples) * 1000, samples[int(len(samples) * 0.9) - 1] * 1000


def seed(ws: Workspace, models: int, versions: int, moves: int) -> None:
    now = utcnow()
    rng = random.Random(0)
    with ws.db.write() as session:
        session.execute(insert(Artifact), [
            {"id": i + 1, "name": f"model-{i:04d}", "created_at": now, "created_by": "bench",
             "latest_version": versions} for i in range(models)
        ])  # fmt: skip
        rows = []
        for i in range(models):
            for v in range(1, versions + 1):
                rows.append({
                    "artifact_id": i + 1, "version": v, "digest": f"blake3:{i:04d}{v:05d}",
                    "kind": "adapter", "store": "file:///bench", "bytes_total": 1000,
                    "file_count": 2, "parents": ["base@1"], "meta": {}, "message": "",
                    "created_by": "bench", "created_at": now,
                })  # fmt: skip
                if len(rows) >= 20000:
                    session.execute(insert(ArtifactVersionRow), rows)
                    rows = []
        if rows:
            session.execute(insert(ArtifactVersionRow), rows)
        session.execute(insert(ArtifactAlias), [
            {"artifact_id": i + 1, "alias": "production", "version": 1, "updated_at": now,
             "updated_by": "bench"} for i in range(models)
        ])  # fmt: skip
        session.execute(insert(AuditEvent), [
            {"at": now, "actor": "bench", "action": "artifact.alias.set", "entity_type": "artifact",
             "entity_key": f"model-{rng.randrange(models):04d}",
             "before": {"alias": "production", "version": 1},
             "after": {"alias": "production", "version": rng.randrange(1, versions + 1)}}
            for _ in range(moves)
        ])  # fmt: skip
        session.execute(insert(EvalRun), [
            {"id": f"eval-{i:012d}", "suite_name": "capitals", "suite_path": "",
             "suite_digest": "blake3:s", "suite": {}, "status": "completed", "targets": ["t"],
             "summary": {"targets": [{"name": "t", "cases": 10, "graded": 10, "errors": 0,
                                      "pass_rate": 0.9, "mean_score": 0.9}]},
             "cases": 10, "errors": 0, "environment": {}, "created_by": "bench",
             "started_at": now, "updated_at": now, "ended_at": now}
            for i in range(models)
        ])  # fmt: skip
        session.execute(insert(EvalTarget), [
            {"run_id": f"eval-{i:012d}", "target": "t", "role": "declared",
             "digest": f"blake3:{i:04d}{versions:05d}", "ref": f"model-{i:04d}@{versions}"}
            for i in range(models)
        ])  # fmt: skip


def bench(label: str, ws: Workspace, args: argparse.Namespace) -> None:
    started = time.perf_counter()
    seed(ws, args.models, args.versions, args.moves)
    print(f"[{label}] seeded {args.models * args.versions:,} versions, {args.moves:,} alias"
          f" moves in {time.perf_counter() - started:.1f} s")  # fmt: skip
    policies = ws.root / "policies"
    policies.mkdir(exist_ok=True)
    for i in range(0, args.models, max(args.models // 50, 1)):  # a policy on every 20th model
        (policies / f"model-{i:04d}.yaml").write_text(
            "guards: [production]\nevals:\n  - {suite: capitals, metric: pass_rate, min: 0.5}\n"
        )
    rng = random.Random(1)

    def name() -> str:
        return f"model-{rng.randrange(args.models):04d}"

    def version() -> str:
        return f"{name()}@{rng.randrange(1, args.versions + 1)}"

    ws.models.list()  # warm the policy cache, as a long-lived process (gateway, dashboard) has it
    results = {
        f"models list ({args.models:,} models)": _p50(ws.models.list, max(args.repeat // 10, 5)),
        "models show name@v": _p50(lambda: ws.models.show(version()), args.repeat),
        "alias resolution name@production": _p50(
            lambda: ws.artifacts.get(f"{name()}@production"), args.repeat
        ),
        "lineage name@v": _p50(lambda: ws.lineage(version()), args.repeat),
        "promote --dry-run (evidence in the db)": _p50(
            lambda: ws.models.promote(
                f"model-{rng.randrange(0, args.models, max(args.models // 50, 1)):04d}"
                f"@{args.versions}",
                "production",
                dry_run=True,
            ),
            args.repeat,
        ),
    }
    for what, (p50, p90) in results.items():
        goal = 50 if what.startswith("promote") else 20
        print(f"[{label}] {what:<42} p50 {p50:7.2f} ms  p90 {p90:7.2f} ms  (goal <= {goal} ms)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=int, default=1000)
    parser.add_argument("--versions", type=int, default=100)
    parser.add_argument("--moves", type=int, default=10000)
    parser.add_argument("--repeat", type=int, default=200)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="llmops-bench-registry-") as tmp:
        os.environ.pop("LLMOPS_DB_URL", None)
        ws = Workspace.init(Path(tmp) / "sqlite", examples=False)
        bench("sqlite", ws, args)
        ws.close()
        url = os.environ.get("LLMOPS_TEST_POSTGRES_URL")
        if url and not args.skip_postgres:
            from sqlalchemy import create_engine, text

            schema = f"bench_{uuid.uuid4().hex[:8]}"
            engine = create_engine(url)
            with engine.begin() as conn:
                conn.execute(text(f"CREATE SCHEMA {schema}"))
            os.environ["LLMOPS_DB_URL"] = f"{url}?options=-csearch_path%3D{schema}"
            try:
                ws = Workspace.init(Path(tmp) / "pg", examples=False)
                bench("postgres", ws, args)
                ws.close()
            finally:
                os.environ.pop("LLMOPS_DB_URL", None)
                with engine.begin() as conn:
                    conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
