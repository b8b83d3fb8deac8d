"""Training run records: create, update with audit, metrics, resume bookkeeping, heartbeat."""

from __future__ import annotations

from datetime import timedelta

import pytest
from sqlalchemy import update

from llmops import Workspace
from llmops.db.models import TrainingRun
from llmops.db.timestamps import utcnow
from llmops.errors import RunNotFoundError


def _run(
    ws: Workspace,
    run_id: str = "run-000000000001",
    *,
    recipe: dict[str, object] | None = None,
    name: str = "r",
    base_model: str = "m",
) -> str:
    ws.train_runs._create(
        id=run_id, recipe_name=name, recipe=recipe or {"a": 1}, recipe_hash="blake3:x",
        dataset_fingerprint="blake3:y", dataset_ref="data@1", base_model=base_model,
        base_model_digest="blake3:z", seed=1, environment={}, output_dir="/tmp/x", max_steps=5,
    )  # fmt: skip
    return run_id


def test_metrics_are_kept_per_step_and_forgotten_past_a_resume_point(ws: Workspace) -> None:
    runs = ws.train_runs
    run_id = _run(ws)
    for step in (1, 2, 3):
        runs._log(run_id, step, {"loss": 1.0 / step})
    runs._log(run_id, 2, {"eval_loss": 0.7}, split="eval")
    assert [m["step"] for m in runs.metrics(run_id) if m["split"] == "train"] == [1, 2, 3]
    runs._forget_after(run_id, 1)
    assert [m["step"] for m in runs.metrics(run_id)] == [1]
    assert runs.get(run_id).step == 1
    runs._log(run_id, 2, {"loss": 0.4})  # the resumed step replaces, never duplicates
    assert [m["loss"] for m in runs.metrics(run_id)] == [1.0, 0.4]


def test_updates_are_audited_and_json_is_versioned(ws: Workspace) -> None:
    run_id = _run(ws)
    done = ws.train_runs._update(run_id, event="run.complete", status="completed", final_loss=0.1)
    data = done.to_json(full=False)
    assert data["status"] == "completed" and data["format_version"] == 1
    assert "recipe" not in data and "recipe" in done.to_json()
    with pytest.raises(RunNotFoundError, match="no training run"):
        ws.train_runs._update("run-nope", status="failed")


def test_a_stale_heartbeat_reads_as_interrupted_and_a_fresh_one_does_not(ws: Workspace) -> None:
    run_id = _run(ws)
    with ws.db.write() as session:
        session.execute(update(TrainingRun).values(updated_at=utcnow() - timedelta(hours=1)))
    assert ws.train_runs.get(run_id).status == "interrupted"
    ws.train_runs._heartbeat(run_id)
    assert ws.train_runs.get(run_id).status == "running"
    assert [r.run_id for r in ws.train_runs.list(status="running")] == [run_id]


def test_search_filters_by_recipe_keys_names_models_status_and_time(ws: Workspace) -> None:
    runs = ws.train_runs
    small = _run(ws, "run-000000000001", recipe={"lora": {"r": 8}}, name="recipes/sft.yaml")
    big = _run(ws, "run-000000000002", recipe={"lora": {"r": 32}}, name="dpo.yaml", base_model="b")
    runs._update(big, status="completed")
    assert [r.run_id for r in runs.search(params={"lora.r": 8})] == [small]
    assert runs.search(params={"lora.r": 8, "lora.alpha": 1}) == []
    assert [r.run_id for r in runs.search(recipe="sft")] == [small]
    assert [r.run_id for r in runs.search(recipe="recipes/sft.yaml")] == [small]
    assert [r.run_id for r in runs.search(base_model="b")] == [big]
    assert {r.run_id for r in runs.search(base_model="blake3:z")} == {small, big}
    assert [r.run_id for r in runs.search(status="completed")] == [big]
    assert [r.run_id for r in runs.search(dataset="data@1", status="running")] == [small]
    assert len(runs.search(since="1d")) == 2 and runs.search(until="2000-01-01") == []
    assert len(runs.search(limit=1)) == 1


def test_listings_become_dataframes_with_params_and_final_metrics(ws: Workspace) -> None:
    runs = ws.train_runs
    run_id = _run(ws, recipe={"format_version": 1, "lora": {"r": 8}, "training": {"seed": 3}})
    runs._log(run_id, 1, {"loss": 2.0})
    runs._log(run_id, 2, {"loss": 1.5, "learning_rate": 1e-4})
    runs._log(run_id, 2, {"eval_loss": 1.7}, split="eval")
    record = runs.get(run_id)
    assert record.final_metrics == {"loss": 1.5, "learning_rate": 1e-4, "eval_loss": 1.7}
    frame = runs.list().to_pandas()
    row = frame.iloc[0]
    assert row["params.lora.r"] == 8 and row["params.training.seed"] == 3
    assert row["metrics.eval_loss"] == 1.7 and row["metrics.loss"] == 1.5
    assert "params.format_version" not in frame.columns and "recipe" not in frame.columns
    assert "environment" not in frame.columns and row["run_id"] == run_id


def test_reprs_say_what_a_run_is_in_one_short_line(ws: Workspace) -> None:
    run_id = _run(ws, recipe={"x": "y" * 5000})
    text = repr(ws.train_runs.get(run_id))
    assert text.startswith(f"RunRecord(run_id='{run_id}', status='running'") and len(text) < 300
    assert "yyyy" not in text
    assert f"1 run(s), latest {run_id}" in repr(ws.train_runs)
    assert "<td>running</td>" in ws.train_runs.list()._repr_html_()


def test_latest_names_the_newest_run(ws: Workspace) -> None:
    with pytest.raises(RunNotFoundError, match="there is no training run yet"):
        ws.train_runs.get("latest")
    _run(ws, "run-000000000001")
    newest = _run(ws, "run-000000000002")
    ws.train_runs._log(newest, 1, {"loss": 1.0})
    assert ws.train_runs.get("latest").run_id == newest
    assert ws.train_runs.metrics("latest") == [{"step": 1, "split": "train", "loss": 1.0}]
