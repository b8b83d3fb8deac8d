"""Training run records: create, update with audit, metrics, resume bookkeeping, heartbeat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from llmops import Workspace
from llmops.db.models import TrainingRun
from llmops.db.timestamps import utcnow
from llmops.errors import RunNotFoundError


def _run(ws: Workspace, run_id: str = "run-000000000001") -> str:
    ws.train_runs.create(
        id=run_id, recipe_name="r", recipe={"a": 1}, recipe_hash="blake3:x",
        dataset_fingerprint="blake3:y", dataset_ref="", base_model="m",
        base_model_digest="blake3:z", seed=1, environment={}, output_dir="/tmp/x", max_steps=5,
    )  # fmt: skip
    return run_id


def test_metrics_are_kept_per_step_and_forgotten_past_a_resume_point(ws: Workspace) -> None:
    runs = ws.train_runs
    run_id = _run(ws)
    for step in (1, 2, 3):
        runs.log(run_id, step, {"loss": 1.0 / step})
    runs.log(run_id, 2, {"eval_loss": 0.7}, split="eval")
    assert [m["step"] for m in runs.metrics(run_id) if m["split"] == "train"] == [1, 2, 3]
    runs.forget_after(run_id, 1)
    assert [m["step"] for m in runs.metrics(run_id)] == [1]
    assert runs.get(run_id).step == 1
    runs.log(run_id, 2, {"loss": 0.4})  # the resumed step replaces, never duplicates
    assert [m["loss"] for m in runs.metrics(run_id)] == [1.0, 0.4]


def test_updates_are_audited_and_json_is_versioned(ws: Workspace) -> None:
    run_id = _run(ws)
    done = ws.train_runs.update(run_id, event="run.complete", status="completed", final_loss=0.1)
    data = done.to_json(full=False)
    assert data["status"] == "completed" and data["format_version"] == 1
    assert "recipe" not in data and "recipe" in done.to_json()
    with pytest.raises(RunNotFoundError, match="no training run"):
        ws.train_runs.update("run-nope", status="failed")


def test_a_stale_heartbeat_reads_as_interrupted_and_a_fresh_one_does_not(ws: Workspace) -> None:
    run_id = _run(ws)
    with ws.db.write() as session:
        session.execute(update(TrainingRun).values(updated_at=utcnow() - timedelta(hours=1)))
    assert ws.train_runs.get(run_id).status == "interrupted"
    ws.train_runs.heartbeat(run_id)
    assert ws.train_runs.get(run_id).status == "running"
    assert [r.run_id for r in ws.train_runs.list(status="running")] == [run_id]
