"""Pipeline fixtures: a workspace with a module of small Python steps beside its pipeline."""

from __future__ import annotations

from pathlib import Path

import pytest

STEPS = """
import json
import os
import time
from pathlib import Path


def make(ctx, n=3):
    ctx.log(f"making {n}")
    text = Path(ctx.path("data.txt")).read_text()
    return {"n": n, "items": list(range(n)), "words": len(text.split())}


def total(ctx, items, fail=False):
    if fail:
        raise RuntimeError("asked to fail")
    return {"total": sum(items)}


def side(ctx, label="x"):
    return {"label": label}


def flaky(ctx, times=1):
    marker = Path(ctx.path("flaky.count"))
    seen = int(marker.read_text()) if marker.exists() else 0
    marker.write_text(str(seen + 1))
    if seen < times:
        raise ConnectionError(f"attempt {seen + 1} failed")
    return {"after": seen + 1}


def prefect_startup_timeout(ctx):
    from prefect.settings import PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS

    return {"seconds": PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value()}


def slow(ctx, items):
    Path(ctx.path("slow.started")).write_text("yes")
    time.sleep(float(os.environ.get("SLOW_SECONDS", "0")))
    return {"slow": len(items)}


def not_json(ctx):
    return {"when": object()}


def nothing(ctx):
    return None
"""

PIPELINE = """\
name: demo
steps:
  - name: make
    python: mysteps:make
    params: {n: 4}
    inputs: [data.txt]
  - name: total
    python: mysteps:total
    needs: [make]
    params: {items: "${make.items}"}
  - name: side
    python: mysteps:side
"""


@pytest.fixture
def root(ws_root: Path) -> Path:
    (ws_root / "mysteps.py").write_text(STEPS, encoding="utf-8")
    (ws_root / "data.txt").write_text("one two three", encoding="utf-8")
    (ws_root / "pipeline.yaml").write_text(PIPELINE, encoding="utf-8")
    return ws_root
