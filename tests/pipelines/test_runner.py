"""Running pipelines: cached steps, changed inputs, failures and resumes, retries, --from and
--only, a killed process, and a second run at the same time."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from llmops import Workspace
from llmops.errors import ConflictError, InputError


def statuses(run: object) -> dict[str, str]:
    return {s.name: s.status for s in run.steps}  # type: ignore[attr-defined]


def test_a_second_run_reuses_every_step(root: Path) -> None:
    ws = Workspace.open(root)
    first = ws.run_pipeline("pipeline.yaml")
    assert first.status == "completed"
    assert statuses(first) == {"make": "ran", "total": "ran", "side": "ran"}
    assert first.step("total").outputs == {"total": 6}
    second = ws.run_pipeline("pipeline.yaml")
    assert statuses(second) == {"make": "cached", "total": "cached", "side": "cached"}
    assert second.step("total").outputs == {"total": 6}
    assert second.step("make").cached_from == first.run_id
    assert second.step("make").key == first.step("make").key
    assert [r.run_id for r in ws.pipelines.list()] == [second.run_id, first.run_id]
    ws.close()


def test_a_changed_input_reruns_only_what_it_affects(root: Path) -> None:
    ws = Workspace.open(root)
    ws.run_pipeline("pipeline.yaml")
    (root / "data.txt").write_text("uno dos tres", encoding="utf-8")
    run = ws.run_pipeline("pipeline.yaml")
    # make's input changed but not its outputs: total's key (made of them) still matches
    assert statuses(run) == {"make": "ran", "total": "cached", "side": "cached"}
    (root / "data.txt").write_text("one two three four", encoding="utf-8")
    run = ws.run_pipeline("pipeline.yaml")
    assert statuses(run) == {"make": "ran", "total": "ran", "side": "cached"}
    assert run.step("make").outputs["words"] == 4
    text = (root / "pipeline.yaml").read_text(encoding="utf-8").replace("n: 4", "n: 5")
    (root / "pipeline.yaml").write_text(text, encoding="utf-8")
    run = ws.run_pipeline("pipeline.yaml")
    assert statuses(run) == {"make": "ran", "total": "ran", "side": "cached"}
    assert run.step("total").outputs == {"total": 10}
    # the step's own code is part of its key
    source = (root / "mysteps.py").read_text(encoding="utf-8")
    (root / "mysteps.py").write_text(source.replace("sum(items)", "sum(items) * 2"), "utf-8")
    run = ws.run_pipeline("pipeline.yaml")
    assert statuses(run)["total"] == "ran" and run.step("total").outputs == {"total": 20}
    ws.close()


def test_a_failed_step_skips_its_dependants_and_a_rerun_resumes(root: Path) -> None:
    ws = Workspace.open(root)
    text = (root / "pipeline.yaml").read_text(encoding="utf-8")
    failing = text.replace('params: {items: "${make.items}"}',
                           'params: {items: "${make.items}", fail: true}')  # fmt: skip
    (root / "pipeline.yaml").write_text(failing + """  - name: after
    python: mysteps:side
    needs: [total]
""", encoding="utf-8")  # fmt: skip
    run = ws.run_pipeline("pipeline.yaml")
    assert run.status == "failed"
    assert statuses(run) == {"make": "ran", "total": "failed", "side": "ran", "after": "skipped"}
    assert run.step("total").error == "RuntimeError: asked to fail"
    assert run.step("after").error == "needs total failed"
    (root / "pipeline.yaml").write_text(text + """  - name: after
    python: mysteps:side
    needs: [total]
""", encoding="utf-8")  # fmt: skip
    again = ws.run_pipeline("pipeline.yaml")
    assert again.status == "completed"
    assert statuses(again) == {"make": "cached", "total": "ran", "side": "cached", "after": "ran"}
    ws.close()


def test_retries_and_bad_outputs(root: Path) -> None:
    (root / "pipeline.yaml").write_text("""\
steps:
  - {name: flaky, python: "mysteps:flaky", params: {times: 2}, retries: 2}
  - {name: once, python: "mysteps:flaky", params: {times: 9}}
  - {name: odd, python: "mysteps:not_json"}
  - {name: empty, python: "mysteps:nothing"}
""", encoding="utf-8")  # fmt: skip
    ws = Workspace.open(root)
    run = ws.run_pipeline("pipeline.yaml")
    flaky = run.step("flaky")
    assert (flaky.status, flaky.attempts, flaky.outputs) == ("ran", 3, {"after": 3})
    once = run.step("once")
    assert once.status == "failed" and once.attempts == 1 and "ConnectionError" in str(once.error)
    assert "outputs are not JSON" in str(run.step("odd").error)
    assert run.step("empty").status == "ran" and run.step("empty").outputs == {}
    ws.close()


def test_from_only_and_force(root: Path) -> None:
    ws = Workspace.open(root)
    with pytest.raises(
        InputError, match=r"'make' \(python:mysteps:make\) has not completed in any run"
    ):
        ws.run_pipeline("pipeline.yaml", only="total")
    first = ws.run_pipeline("pipeline.yaml")
    run = ws.run_pipeline("pipeline.yaml", from_step="total")
    assert statuses(run) == {"make": "cached", "total": "cached", "side": "skipped"}
    assert run.step("make").cached_from == first.run_id
    run = ws.run_pipeline("pipeline.yaml", only="total", force=("total",))
    assert statuses(run) == {"make": "cached", "total": "ran", "side": "skipped"}
    assert run.options == {"from": None, "only": "total", "force": ["total"], "engine": "local"}
    with pytest.raises(InputError, match="--force 'nope': the pipeline has no such step"):
        ws.run_pipeline("pipeline.yaml", force=("nope",))
    ws.close()


def _start(root: Path, *args: str, seconds: float) -> subprocess.Popen[str]:
    env = {**os.environ, "LLMOPS_WORKSPACE": str(root), "SLOW_SECONDS": str(seconds)}
    return subprocess.Popen(
        [sys.executable, "-m", "llmops", "pipeline", "run", *args],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip


def test_a_killed_run_is_marked_and_the_next_one_resumes(root: Path) -> None:
    (root / "pipeline.yaml").write_text("""\
name: demo
steps:
  - {name: make, python: "mysteps:make"}
  - {name: slow, python: "mysteps:slow", needs: [make], params: {items: "${make.items}"}}
  - {name: total, python: "mysteps:total", needs: [make, slow], params: {items: "${make.items}"}}
""", encoding="utf-8")  # fmt: skip
    proc = _start(root, seconds=120)
    deadline = time.monotonic() + 60
    while not (root / "slow.started").exists():
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.1)
    busy = _start(root, seconds=0)  # the same pipeline at the same time: refused
    _, err = busy.communicate(timeout=60)
    assert busy.returncode == 1 and "pipeline 'demo' is already running here" in err
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    ws = Workspace.open(root)
    killed = ws.pipelines.get("latest")
    assert killed.status == "running" and statuses(killed)["slow"] == "running"
    run = ws.run_pipeline("pipeline.yaml")
    assert statuses(run) == {"make": "cached", "slow": "ran", "total": "ran"}
    killed = ws.pipelines.get(killed.run_id)
    assert killed.status == "interrupted" and "ended before the run did" in str(killed.error)
    assert statuses(killed) == {"make": "ran", "slow": "failed", "total": "skipped"}
    assert killed.step("slow").error == "interrupted: the pipeline's process ended"
    ws.close()


def test_a_lock_held_in_this_process_is_a_conflict(root: Path) -> None:
    from llmops.pipelines.runner import _lock

    ws = Workspace.open(root)
    with _lock(ws, "demo"), pytest.raises(ConflictError, match="already running"):
        ws.run_pipeline("pipeline.yaml")
    assert ws.run_pipeline("pipeline.yaml").status == "completed"  # released
    ws.close()


def test_an_edit_to_a_local_module_a_step_imports_reruns_it_with_the_new_code(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``stepcode`` imports ``helpers.rates`` (a package of the pipeline's folder) and
    ``.shared`` relatively: editing either is an edit of the step, and the rerun (in the same
    process, as a notebook would) uses the new code."""
    monkeypatch.delenv("LLMOPS_DB_URL", raising=False)
    ws = Workspace.init(tmp_path / "ws", examples=False)
    (ws.root / "helpers").mkdir()
    (ws.root / "helpers" / "__init__.py").write_text("from .shared import BASE\n")
    (ws.root / "helpers" / "shared.py").write_text("BASE = 10\n")
    (ws.root / "helpers" / "rates.py").write_text("RATE = 2\n")
    (ws.root / "stepcode.py").write_text(
        "from helpers.rates import RATE\nimport helpers\n\n"
        "def compute(ctx):\n    return {'value': RATE * helpers.BASE}\n"
    )
    (ws.root / "pipeline.yaml").write_text("steps:\n  - {name: calc, python: 'stepcode:compute'}\n")
    first = ws.run_pipeline()
    assert first.step("calc").outputs == {"value": 20}
    assert ws.run_pipeline().step("calc").status == "cached"
    (ws.root / "helpers" / "rates.py").write_text("RATE = 3\n")
    second = ws.run_pipeline()
    assert second.step("calc").status == "ran" and second.step("calc").outputs == {"value": 30}
    (ws.root / "helpers" / "shared.py").write_text("BASE = 100\n")
    third = ws.run_pipeline()
    assert third.step("calc").status == "ran" and third.step("calc").outputs == {"value": 300}
    ws.close()
