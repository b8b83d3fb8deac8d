"""Triggers: run only when an input changed since the last completed run, or when enough new
rows arrived; what a cron job calls."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmops import Workspace
from llmops.errors import InputError
from llmops.pipelines import load_pipeline
from llmops.pipelines.triggers import check_trigger
from tests.train.conftest import chat_rows, write_jsonl

PIPELINE = """\
name: retrain
steps:
  - {name: data, step: data, params: {path: data/chat.jsonl}}
  - name: make
    python: mysteps:make
    inputs: [data.txt]
  - {name: total, python: mysteps:total, needs: [make], params: {items: "${make.items}"}}
"""


def test_changes_since_the_last_completed_run(root: Path) -> None:
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(20))
    (root / "pipeline.yaml").write_text(PIPELINE, encoding="utf-8")
    ws = Workspace.open(root)
    p = load_pipeline(root / "pipeline.yaml")
    first = check_trigger(ws, p, ("data",))
    assert first.changed and first.since is None
    run = ws.run_pipeline()
    assert run.status == "completed"
    assert check_trigger(ws, p, ("data",)) == check_trigger(ws, p, ("data",))
    quiet = check_trigger(ws, p)
    assert not quiet.changed and quiet.reason == f"nothing changed since {run.run_id}"
    (root / "data.txt").write_text("something else", encoding="utf-8")
    assert not check_trigger(ws, p, ("data",)).changed  # not a step it watches
    assert check_trigger(ws, p, ("make",)).reason == "make: its inputs changed"
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(23))
    assert check_trigger(ws, p, ("data",)).changed
    few = check_trigger(ws, p, ("data",), min_new_rows=5)
    assert not few.changed  # 3 new rows are not enough
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(26))
    enough = check_trigger(ws, p, ("data",), min_new_rows=5)
    assert enough.changed and enough.reason == "data: 6 new rows (>= 5)"
    with pytest.raises(InputError, match="--if-changed 'nope'"):
        check_trigger(ws, p, ("nope",))
    ws.close()


def llmops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    """The CLI with this test's environment (its database URL included)."""
    return subprocess.run([sys.executable, "-m", "llmops", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip


def test_the_trigger_block_and_the_cli(root: Path) -> None:
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(20))
    (root / "pipeline.yaml").write_text(
        PIPELINE + "trigger: {steps: [data], min_new_rows: 10}\n", encoding="utf-8"
    )

    def run(*args: str) -> dict[str, object]:
        done = llmops("pipeline", "run", "--if-changed", "any", "--json", *args, cwd=root)
        assert done.returncode == 0, done.stderr
        return dict(json.loads(done.stdout))

    assert run()["status"] == "completed"  # never ran: runs
    skipped = run()
    assert skipped["status"] == "unchanged" and skipped["run_id"] is None
    assert str(skipped["reason"]).startswith("nothing changed since pipe-")
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(25))
    assert run()["status"] == "unchanged"  # 5 new rows < 10
    write_jsonl(root / "data" / "chat.jsonl", chat_rows(31))
    ran = run()
    assert ran["status"] == "completed"
    steps = {s["name"]: s["status"] for s in ran["steps"]}  # type: ignore[attr-defined]
    assert steps == {"data": "ran", "make": "cached", "total": "cached"}
    human = llmops("pipeline", "run", "--if-changed", "data", cwd=root)
    assert human.returncode == 0 and "not running retrain: nothing changed since" in human.stdout
