"""``llmops pipeline run|show|list|validate`` as a user (and a cron job) calls them."""

from __future__ import annotations

import json
from pathlib import Path

from llmops import Workspace
from tests.cli.test_eval_cli import llmops
from tests.pipelines.conftest import PIPELINE, STEPS


def _project(tmp_path: Path) -> Path:
    root = tmp_path / "proj"
    Workspace.init(root, examples=False).close()
    (root / "mysteps.py").write_text(STEPS, encoding="utf-8")
    (root / "data.txt").write_text("one two", encoding="utf-8")
    (root / "pipeline.yaml").write_text(PIPELINE, encoding="utf-8")
    return root


def test_run_json_contract_then_cached(tmp_path: Path) -> None:
    root = _project(tmp_path)
    done = llmops("pipeline", "run", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["status"] == "completed" and out["run_id"].startswith("pipe-")
    assert [(s["name"], s["status"]) for s in out["steps"]] == [
        ("make", "ran"), ("total", "ran"), ("side", "ran")
    ]  # fmt: skip
    assert all(isinstance(s["seconds"], float) for s in out["steps"])
    again = json.loads(llmops("pipeline", "run", "pipeline.yaml", "--json", cwd=root).stdout)
    assert {s["status"] for s in again["steps"]} == {"cached"}
    shown = llmops("pipeline", "show", "latest", cwd=root)
    assert shown.returncode == 0 and again["run_id"] in shown.stdout
    assert f"cached from {out['run_id']}" in shown.stdout
    listed = json.loads(llmops("pipeline", "list", "--json", cwd=root).stdout)
    assert [r["run_id"] for r in listed] == [again["run_id"], out["run_id"]]
    human = llmops("pipeline", "list", cwd=root)
    assert "0/3/0" in human.stdout and "3/0/0" in human.stdout


def test_a_failed_step_exits_1_and_bad_input_exits_2(tmp_path: Path) -> None:
    root = _project(tmp_path)
    text = PIPELINE.replace('params: {items: "${make.items}"}',
                            'params: {items: "${make.items}", fail: true}')  # fmt: skip
    (root / "pipeline.yaml").write_text(text, encoding="utf-8")
    failed = llmops("pipeline", "run", "--json", cwd=root)
    assert failed.returncode == 1
    steps = {s["name"]: s for s in json.loads(failed.stdout)["steps"]}
    assert steps["total"]["status"] == "failed"
    assert steps["total"]["error"] == "RuntimeError: asked to fail"
    human = llmops("pipeline", "run", cwd=root)
    assert human.returncode == 1 and "total: FAILED after 1 attempt(s)" in human.stderr
    (root / "cycle.yaml").write_text(
        "steps:\n  - {name: a, python: 'mysteps:side', needs: [b]}\n"
        "  - {name: b, python: 'mysteps:side', needs: [a]}\n",
        encoding="utf-8",
    )
    for args, message in (
        (("pipeline", "run", "cycle.yaml"), "cycle.yaml:2:"),
        (("pipeline", "validate", "cycle.yaml"), "the steps form a cycle: a -> b -> a"),
        (("pipeline", "run", "missing.yaml"), "no such pipeline file"),
        (("pipeline", "run", "--only", "zz"), "--only"),
        (("pipeline", "show", "pipe-000000000000"), "no pipeline run 'pipe-000000000000'"),
    ):
        done = llmops(*args, cwd=root)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
        assert done.stderr.count("\n") == 1, done.stderr
    ok = llmops("pipeline", "validate", "--json", cwd=root)
    assert json.loads(ok.stdout)["order"] == ["make", "total", "side"]


def test_compile_to_kfp_writes_one_task_per_step(tmp_path: Path) -> None:
    import yaml

    root = _project(tmp_path)
    done = llmops("pipeline", "compile", "--to", "kfp", "-o", "spec.yaml", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tasks"] == ["make", "total", "side"]
    spec = yaml.safe_load((root / "spec.yaml").read_text(encoding="utf-8"))
    assert len(spec["root"]["dag"]["tasks"]) == 3
    for args, message in (
        (("--to", "argo", "-o", "x.yaml"), "--to 'argo': unknown target"),
        (("--to", "kfp", "-o", "no/such/dir/x.yaml"), "does not exist"),
    ):
        bad = llmops("pipeline", "compile", *args, cwd=root)
        assert bad.returncode == 2 and message in bad.stderr, bad.stderr
