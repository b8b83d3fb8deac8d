"""The training CLI contract: train, runs, data validate, recipes validate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from llmops import Workspace
from tests.train.conftest import chat_rows, write_jsonl, write_recipe


def llmops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    env.update(LLMOPS_USER="tester", OMP_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, "-m", "llmops", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=300, check=False,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path: Path, tiny_model: Path) -> Path:
    root = tmp_path / "proj"
    Workspace.init(root, examples=False).close()
    shutil.copytree(tiny_model, root / "models" / "tiny")
    write_jsonl(root / "data" / "chat.jsonl", chat_rows())
    write_recipe(root)
    return root


def test_train_json_then_runs_show_json(project: Path) -> None:
    done = llmops("train", "recipe.yaml", "--set", "training.max_steps=3", "--json", cwd=project)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)  # stdout holds the JSON document and nothing else
    assert out["status"] == "completed" and isinstance(out["final_loss"], float)
    assert out["adapter"]["name"] == "tiny-adapter" and out["adapter"]["version"] == 1
    assert out["adapter"]["digest"].startswith("blake3:")

    shown = llmops("runs", "show", out["run_id"], "--json", cwd=project)
    assert shown.returncode == 0, shown.stderr
    run = json.loads(shown.stdout)
    assert run["run_id"] == out["run_id"] and run["status"] == "completed"
    assert run["format_version"] == 1 and run["llmops_version"]
    assert "kernels-community" not in done.stderr  # third-party import noise stays off
    for key in ("recipe_hash", "dataset_fingerprint", "base_model_digest"):
        assert run[key].startswith("blake3:")
    losses = [m for m in run["metrics"] if m["split"] == "train"]
    assert [m["step"] for m in losses] == [1, 2, 3] and all("loss" in m for m in losses)

    listed = json.loads(llmops("runs", "list", "--json", cwd=project).stdout)
    assert [r["run_id"] for r in listed] == [out["run_id"]]
    human = llmops("runs", "show", "latest", cwd=project)
    assert "tiny-adapter@1" in human.stdout and "base model" in human.stdout
    assert f"final loss  {out['final_loss']:.4f}" in human.stdout  # rounded
    listed_human = llmops("runs", "list", "--recipe", "recipe", cwd=project)
    assert out["run_id"] in listed_human.stdout
    assert llmops("runs", "list", "--param", "lora.r=99", "--json", cwd=project).stdout == "[]\n"


def test_data_validate_json_and_exit_codes(project: Path) -> None:
    ok = llmops("data", "validate", "data/chat.jsonl", "--format", "chat", "--json", cwd=project)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    rows = chat_rows()
    rows[3]["messages"][1]["content"] = ""
    write_jsonl(project / "data" / "bad.jsonl", rows)
    bad = llmops("data", "validate", "data/bad.jsonl", "--format", "chat", "--json", cwd=project)
    assert bad.returncode == 1
    report = json.loads(bad.stdout)
    assert report["ok"] is False
    finding = report["findings"][0]
    assert (finding["check"], finding["rows"]) == ("empty_turn", [4])
    assert finding["message"]
    human = llmops("data", "validate", "data/bad.jsonl", "--tokenizer", "models/tiny",
                   "--max-length", "8", cwd=project)  # fmt: skip
    assert human.returncode == 1 and "truncated" in human.stdout and "gate FAILED" in human.stdout


def test_training_on_bad_data_exits_1_with_one_line(project: Path) -> None:
    rows = chat_rows()
    rows[3]["messages"][1]["content"] = ""
    write_jsonl(project / "data" / "chat.jsonl", rows)
    done = llmops("train", "recipe.yaml", "--json", cwd=project)
    assert done.returncode == 1 and done.stdout == ""
    assert done.stderr.count("\n") == 1 and "data gate failed" in done.stderr


@pytest.mark.parametrize(
    ("args", "match"),
    [
        (("recipes", "validate", "broken.yaml"), "line 2: unknown field 'metod'"),
        (("train", "broken.yaml"), "did you mean 'method'?"),
        (("train",), "give a RECIPE file or --resume RUN_ID"),
        (("runs", "show", "run-000000000000"), "no training run 'run-000000000000'"),
        (("train", "recipe.yaml", "--set", "nonsense"), "--set: 'nonsense' is not key=value"),
    ],
)
def test_bad_input_exits_2_with_one_line(project: Path, args: tuple[str, ...], match: str) -> None:
    (project / "broken.yaml").write_text("base_model: x\nmetod: lora\n")
    done = llmops(*args, cwd=project)
    assert done.returncode == 2
    assert match in done.stderr and done.stderr.count("\n") == 1


BLOCK_TORCH = """
import sys, importlib.abc
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in {"torch", "transformers", "peft", "trl"}:
            raise ModuleNotFoundError(f"No module named {name!r}", name=name)
        return None
sys.meta_path.insert(0, Block())
import importlib.util
real = importlib.util.find_spec
def find_spec(name, package=None):
    if name.partition(".")[0] in {"torch", "transformers", "peft", "trl"}:
        return None
    return real(name, package)
importlib.util.find_spec = find_spec
from llmops.cli import main
sys.argv = ["llmops", *sys.argv[1:]]
main()
"""


def test_train_without_the_training_stack_names_the_extra(project: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    done = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH, "train", "recipe.yaml"],
        cwd=project, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 2, done.stderr
    assert "pip install 'llmops[train]'" in done.stderr and done.stderr.count("\n") == 1


def test_a_killed_run_shows_as_interrupted_with_the_resume_command(project: Path) -> None:
    from datetime import timedelta

    from sqlalchemy import update

    from llmops.db.models import TrainingRun
    from llmops.db.timestamps import utcnow

    ws = Workspace.open(project)
    ws.runs._create(
        id="run-000000000001", recipe_name="r", recipe={}, recipe_hash="blake3:x",
        dataset_fingerprint="blake3:y", dataset_ref="", base_model="m",
        base_model_digest="blake3:z", seed=1, environment={}, output_dir="/tmp/x", max_steps=5,
    )  # fmt: skip
    assert ws.runs.get("run-000000000001").status == "running"  # fresh heartbeat
    with ws.db.write() as session:  # the process died ten minutes ago
        session.execute(update(TrainingRun).values(updated_at=utcnow() - timedelta(minutes=10)))
    ws.close()
    listed = json.loads(
        llmops("runs", "list", "--status", "interrupted", "--json", cwd=project).stdout
    )
    assert [r["status"] for r in listed] == ["interrupted"]
    assert (
        json.loads(llmops("runs", "list", "--status", "running", "--json", cwd=project).stdout)
        == []
    )
    shown = llmops("runs", "show", "run-000000000001", cwd=project)
    assert (
        "interrupted" in shown.stdout and "llmops train --resume run-000000000001" in shown.stdout
    )
