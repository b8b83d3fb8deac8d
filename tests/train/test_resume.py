"""Checkpoint and resume: a run killed with SIGKILL continues to the same result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors.numpy import load_file

from llmops import Workspace
from tests.train.conftest import write_recipe

STEPS, SAVE = 12, 4


def _start(ws: Workspace, recipe: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "LLMOPS_WORKSPACE": str(ws.root), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(
        [sys.executable, "-m", "llmops", "train", str(recipe), "--json"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def _kill_after_first_checkpoint(ws: Workspace, proc: subprocess.Popen[str]) -> str:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        runs = ws.runs.list()
        if runs:
            marker = Path(runs[0].output_dir) / "checkpoints" / f"checkpoint-{SAVE}"
            if (marker / "llmops-checkpoint.json").is_file():
                assert proc.poll() is None, "the run ended before it could be killed"
                proc.send_signal(signal.SIGKILL)
                proc.communicate(timeout=30)  # reap it and close its pipes
                return runs[0].run_id
        if proc.poll() is not None:
            pytest.fail(f"the run exited early: {proc.communicate()[1][-2000:]}")
        time.sleep(0.01)
    proc.kill()
    proc.communicate()
    pytest.fail("no checkpoint appeared")


def _adapter(ws: Workspace, ref: str, dest: Path) -> dict[str, object]:
    ws.artifacts.pull(ref, dest)
    return load_file(dest / "adapter_model.safetensors")


def test_sigkilled_run_resumes_to_the_same_final_loss(train_ws: Workspace, tmp_path: Path) -> None:
    import numpy as np

    recipe = write_recipe(train_ws.root, steps=STEPS, save=SAVE)
    reference = train_ws.train(recipe)

    proc = _start(train_ws, recipe)
    run_id = _kill_after_first_checkpoint(train_ws, proc)
    killed = train_ws.runs.get(run_id)
    assert killed.status == "running" and killed.step < STEPS  # SIGKILL leaves no chance to mark it

    resumed = train_ws.train(resume=run_id)
    assert resumed.run.status == "completed"
    assert resumed.run.step == STEPS and resumed.run.attempts == 2
    assert resumed.run.final_loss == pytest.approx(reference.run.final_loss, rel=1e-5, abs=1e-6)
    steps = [m["step"] for m in train_ws.runs.metrics(run_id) if m["split"] == "train"]
    assert steps == list(range(1, STEPS + 1))  # no step logged twice, none missing
    assert resumed.adapter is not None and reference.adapter is not None
    a = _adapter(train_ws, reference.adapter.ref, tmp_path / "a")
    b = _adapter(train_ws, resumed.adapter.ref, tmp_path / "b")
    worst = max(float(np.abs(a[k] - b[k]).max()) for k in a)  # type: ignore[operator]
    assert worst < 1e-5


def test_cli_resume_reports_the_run(train_ws: Workspace) -> None:
    recipe = write_recipe(train_ws.root, steps=STEPS, save=SAVE)
    proc = _start(train_ws, recipe)
    run_id = _kill_after_first_checkpoint(train_ws, proc)
    env = {**os.environ, "LLMOPS_WORKSPACE": str(train_ws.root), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, "-m", "llmops", "train", "--resume", run_id, "--json"],
        env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["run_id"] == run_id and out["status"] == "completed" and out["attempts"] == 2
