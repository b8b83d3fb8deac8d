"""Prompt registry benchmarks (issue: foundation). Run: python benchmarks/bench_prompts.py

Measures, on a fresh workspace in a temporary folder:
  1. ``get(name, label=...)`` p50/p99 with the cache warm and with the cache off (SQLite), against
     a raw sqlite3 query of the same row as the floor;
  2. ``versions()`` (list) and ``history()`` of a prompt with 10,000 versions;
  3. 8 writer processes x 200 pushes of the same prompt, on SQLite and (when
     LLMOPS_TEST_POSTGRES_URL is set) PostgreSQL: pushes/s, errors, duplicate or missing numbers;
  4. ``import llmops`` and ``llmops --help`` wall time.
Options: --versions N (default 10000), --writers N (8), --pushes N (200), --skip-postgres.
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
import uuid
from pathlib import Path

from llmops import Workspace
from llmops.prompts import PromptSpec


def _pcts(samples: list[float]) -> str:
    samples = sorted(samples)
    p50 = statistics.median(samples)
    p99 = samples[int(len(samples) * 0.99) - 1]
    return f"p50 {p50 * 1000:.4f} ms  p99 {p99 * 1000:.4f} ms"


def _timed(fn, n: int) -> list[float]:  # type: ignore[no-untyped-def]
    out = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def bench_get(root: Path) -> None:
    ws = Workspace.init(root / "get", examples=True)
    ws.prompts.push_files()
    ws.prompts.label("summarize@1", "production")
    ws.prompts.get("summarize", label="production")
    warm = _timed(lambda: ws.prompts.get("summarize", label="production"), 20000)
    cold = _timed(lambda: ws.prompts.get("summarize", label="production", cache=False), 3000)
    db = sqlite3.connect(ws.root / ".llmops" / "registry.db")
    sql = (
        "SELECT pv.* FROM prompt_version pv JOIN prompt p ON p.id = pv.prompt_id"
        " JOIN prompt_label l ON l.prompt_id = pv.prompt_id AND l.version = pv.version"
        " WHERE p.name = ? AND l.label = ?"
    )
    raw = _timed(lambda: db.execute(sql, ("summarize", "production")).fetchone(), 3000)
    print(f"get(label) cached      : {_pcts(warm)}   (goal <= 0.05 ms)")
    print(f"get(label) cache off   : {_pcts(cold)}   (goal <= 1 ms)")
    print(f"raw sqlite3 same row   : {_pcts(raw)}   (floor: one query, no parsing)")
    ws.close()


def bench_many_versions(root: Path, count: int) -> None:
    ws = Workspace.init(root / "many", examples=False)
    started = time.perf_counter()
    for i in range(count):
        ws.prompts.push(PromptSpec(name="big", template=f"version {i}: {{{{ text }}}}"))
        if i % 100 == 0:
            ws.prompts.label("big", "production")
    seeded = time.perf_counter() - started
    print(f"seed {count} versions (one writer, SQLite): {count / seeded:.0f} pushes/s")
    lst = _timed(lambda: ws.prompts.versions("big"), 10)
    hist = _timed(lambda: ws.prompts.history("big"), 10)
    print(f"versions() of {count}  : median {statistics.median(lst) * 1000:.1f} ms (goal <= 50 ms)")
    print(
        f"history() of {count}+  : median {statistics.median(hist) * 1000:.1f} ms (goal <= 50 ms)"
    )
    ws.close()


WRITER = textwrap.dedent(
    """
    import sys, time
    from llmops import Workspace
    from llmops.prompts import PromptSpec
    worker, count, root = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    ws = Workspace.open(root)
    ws.db  # connect and migrate before the clock starts
    print("ready", flush=True)
    sys.stdin.readline()
    errors = 0
    for i in range(count):
        try:
            ws.prompts.push(PromptSpec(name="shared", template=f"w{worker} i{i} {{{{ x }}}}"))
        except Exception as exc:
            errors += 1
            print(repr(exc), file=sys.stderr)
    print(errors, flush=True)
    """
)


def bench_writers(root: Path, label: str, db_url: str | None, writers: int, pushes: int) -> None:
    ws_root = root / f"writers-{label}"
    env = dict(os.environ)
    if db_url:
        env["LLMOPS_DB_URL"] = db_url
    else:
        env.pop("LLMOPS_DB_URL", None)
    os.environ.update({k: v for k, v in env.items() if k == "LLMOPS_DB_URL"})
    ws = Workspace.init(ws_root, examples=False)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(w), str(pushes), str(ws_root)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for w in range(writers)
    ]
    for p in procs:
        assert p.stdout is not None and p.stdout.readline().strip() == "ready"
    started = time.perf_counter()
    for p in procs:
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
    errors = sum(int(p.communicate()[0].strip() or 1) for p in procs)
    elapsed = time.perf_counter() - started
    numbers = [v.version for v in ws.prompts.versions("shared")]
    expected = list(range(1, writers * pushes + 1))
    dupes = len(numbers) - len(set(numbers))
    print(
        f"{writers} writers x {pushes} pushes on {label:<10}: {writers * pushes / elapsed:.0f}"
        f" pushes/s, errors {errors}, duplicates {dupes}, gap-free {numbers == expected}"
    )
    ws.close()
    os.environ.pop("LLMOPS_DB_URL", None)


def bench_startup() -> None:
    def wall(args: list[str]) -> float:
        runs = []
        for _ in range(5):
            t = time.perf_counter()
            subprocess.run(args, check=True, capture_output=True)
            runs.append(time.perf_counter() - t)
        return statistics.median(runs)

    base = wall([sys.executable, "-c", "pass"])
    imp = wall([sys.executable, "-c", "import llmops"])
    helpt = wall([sys.executable, "-m", "llmops", "--help"])
    print(f"python -c pass         : {base * 1000:.0f} ms (interpreter start, the floor)")
    print(f"import llmops          : {imp * 1000:.0f} ms ({(imp - base) * 1000:.0f} ms over start)")
    print(f"llmops --help          : {helpt * 1000:.0f} ms")


def _pg_schema_url(base: str) -> str:
    from sqlalchemy import create_engine, text

    schema = f"bench_{uuid.uuid4().hex[:8]}"
    engine = create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(text(f"CREATE SCHEMA {schema}"))
    engine.dispose()
    return f"{base}{'&' if '?' in base else '?'}options=-csearch_path%3D{schema}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--versions", type=int, default=10000)
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument("--pushes", type=int, default=200)
    parser.add_argument("--skip-postgres", action="store_true")
    args = parser.parse_args()
    os.environ.setdefault("LLMOPS_USER", "bench")
    os.environ.pop("LLMOPS_DB_URL", None)
    print(json.dumps({"python": sys.version.split()[0], "cpus": os.cpu_count()}))
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        bench_startup()
        bench_get(root)
        bench_many_versions(root, args.versions)
        bench_writers(root, "SQLite", None, args.writers, args.pushes)
        pg = os.environ.get("LLMOPS_TEST_POSTGRES_URL")
        if pg and not args.skip_postgres:
            bench_writers(root, "PostgreSQL", _pg_schema_url(pg), args.writers, args.pushes)
        else:
            print("PostgreSQL skipped (set LLMOPS_TEST_POSTGRES_URL; scripts/postgres.sh start)")


if __name__ == "__main__":
    main()
