"""The main job as a pipeline, as whole processes: `llmops init` then `llmops pipeline run` on the
shipped pipeline.yaml in a fresh workspace (cold: the model imported, the data gate, a 20-step
LoRA, base and adapter evaluated, the promotion), then the same command again (every step
reused), --repeats times. Goals (issue 16): cold at most 10 minutes after the install, cached
at most 1 minute.

    .venv/bin/python benchmarks/bench_pipeline.py      # --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

LLMOPS = [sys.executable, "-m", "llmops"]


def timed(args: list[str], cwd: Path) -> tuple[float, dict[str, object] | None]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "TQDM_DISABLE": "1"}
    env = {k: v for k, v in env.items() if k not in ("LLMOPS_DB_URL", "LLMOPS_STORE_URL")}
    start = time.perf_counter()
    done = subprocess.run([*LLMOPS, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          check=False)  # fmt: skip
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({done.returncode}): {done.stderr[-2000:]}")
    try:
        return seconds, json.loads(done.stdout)
    except json.JSONDecodeError:
        return seconds, None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        root = Path(tmp) / "ws"
        init, _ = timed(["init", str(root)], Path(tmp))
        cold, first = timed(["pipeline", "run", "--json"], root)
        assert first is not None and first["status"] == "completed", first
        cached = []
        for _ in range(args.repeats):
            seconds, again = timed(["pipeline", "run", "--json"], root)
            assert again is not None and {s["status"] for s in again["steps"]} == {"cached"}  # type: ignore[index]
            cached.append(seconds)
    print(f"llmops init: {init:.1f} s")
    print(f"cold run (whole process): {cold:.1f} s")
    for s in first["steps"]:  # type: ignore[union-attr]
        print(f"  {s['name']:<11} {s['status']:<7} {s['seconds']:7.1f} s")
    print(f"cached run (whole process): median {statistics.median(cached):.2f} s "
          f"(range {min(cached):.2f}-{max(cached):.2f}, n={len(cached)})")  # fmt: skip


if __name__ == "__main__":
    main()
