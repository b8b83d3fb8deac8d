"""Dashboard fixtures: a workspace with something on every page (two eval runs with known
differences, a pairwise run queued for review, prompts with two versions, a model with an
adapter and its lineage, a training run with curves, a traffic policy with a canary), and an
empty one."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import streamlit.runtime.scriptrunner_utils.script_run_context  # noqa: F401 (its logger)

from llmops import Workspace
from llmops.evals.testing import record_run
from tests.registry.conftest import model_folder

APP = Path(__file__).resolve().parents[2] / "app" / "dashboard.py"

# AppTest writes session state outside a script run: streamlit logs a harmless line each time.
logging.getLogger("streamlit.runtime.scriptrunner_utils.script_run_context").addFilter(
    lambda record: "missing ScriptRunContext" not in record.getMessage()
)

CASES = 40
REGRESSED = (3, 8, 15, 22, 31)  # pass in A, fail in B
FIXED = (0, 12)  # fail in A, pass in B
FAILING_A = (0, 12, 27)  # fail in A (27 fails in both)


def capital_case(i: int, passed: bool, version: str) -> dict[str, Any]:
    return {
        "case_index": i, "target": "model", "case_id": f"case-{i:02d}",
        "vars": {"country": f"Country{i:02d}", "region": "europe" if i % 2 else "asia"},
        "metadata": {"tags": ["geo", *(["hard"] if i % 5 == 0 else [])], "source": "atlas"},
        "output": f"The capital of Country{i:02d} is {'Capital' if passed else 'Unknown'}{i} ({version}).",
        "passed": passed, "score": 1.0 if passed else 0.0,
        "assertions": [{"type": "icontains", "passed": passed, "score": float(passed),
                        "reason": "names the capital" if passed else "no capital named"}],
        "latency_ms": 20.0 + i, "cost": 0.0002,
    }  # fmt: skip


def two_runs(ws: Workspace) -> tuple[str, str]:
    """Runs A and B of one suite: B regresses REGRESSED and fixes FIXED."""
    a = [capital_case(i, i not in FAILING_A, "a") for i in range(CASES)]
    b = [
        capital_case(i, (i not in FAILING_A or i in FIXED) and i not in REGRESSED, "b")
        for i in range(CASES)
    ]
    ra = record_run(ws.eval_runs, a, suite_name="capitals")
    rb = record_run(ws.eval_runs, b, suite_name="capitals")
    return ra.run_id, rb.run_id


def pairwise_run(ws: Workspace) -> str:
    rows: list[dict[str, Any]] = []
    for i in range(6):
        for target, text in (("base", f"base answer {i}"), ("tuned", f"tuned answer {i}")):
            rows.append({"case_index": i, "target": target, "vars": {"q": f"question {i}"},
                         "output": text, "passed": True, "score": 1.0})  # fmt: skip
    pairs = [{"case_index": i, "verdict": "B"} for i in range(6)]
    return record_run(
        ws.eval_runs, rows, targets=("base", "tuned"), pairs=pairs, suite_name="pairs"
    ).run_id


@pytest.fixture
def full_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.delenv("LLMOPS_DB_URL", raising=False)
    monkeypatch.delenv("LLMOPS_STORE_URL", raising=False)
    monkeypatch.setenv("LLMOPS_USER", "tester")
    root = tmp_path / "ws"
    ws = Workspace.init(root)
    a, b = two_runs(ws)
    pairs = pairwise_run(ws)
    ws.reviews.from_run(pairs)
    ws.prompts.push_files()
    name = "classify-ticket"
    first = root / "prompts" / "classify-ticket.yaml"
    first.write_text(first.read_text(encoding="utf-8").replace("You route", "You truly route"),
                     encoding="utf-8")  # fmt: skip
    ws.prompts.push_files(message="second")
    ws.prompts.label(f"{name}@2", "production")
    ws.artifacts.push(model_folder(tmp_path / "base", 0, kind="base"), name="base",
                      kind="base-model")  # fmt: skip
    for seed in (1, 2):
        ws.artifacts.push(model_folder(tmp_path / f"a{seed}", seed), name="support-lora",
                          kind="adapter", parents=["base@1"])  # fmt: skip
    ws.train_runs._create(
        id="run-00000000beef", recipe_name="recipes/sft-lora.yaml", recipe={"lora": {"r": 8}},
        recipe_hash="blake3:x", dataset_fingerprint="blake3:y", dataset_ref="data@1",
        base_model="base@1", base_model_digest="blake3:z", seed=1, environment={"torch": "2"},
        output_dir=str(tmp_path / "out"), max_steps=4,
    )  # fmt: skip
    for step in (1, 2, 3, 4):
        ws.train_runs._log("run-00000000beef", step, {"loss": 2.0 / step, "learning_rate": 1e-4})
    for version in (1, 2):  # nothing listens there: the pages only read the records
        ws.serving.backends.attach(f"support-lora@{version}", url="http://127.0.0.1:9/v1",
                                   served_name=f"lora-v{version}")  # fmt: skip
    ws.serving.traffic.set("support-bot", stable="support-lora@1")
    ws.serving.canaries.start("support-bot", candidate="support-lora@2")
    monkeypatch.setenv("LLMOPS_WORKSPACE", str(root))
    yield {"ws": ws, "a": a, "b": b, "pairs": pairs, "prompt": name, "root": root}
    ws.close()


@pytest.fixture
def empty_ws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv("LLMOPS_DB_URL", raising=False)
    root = tmp_path / "empty"
    Workspace.init(root, examples=False).close()
    monkeypatch.setenv("LLMOPS_WORKSPACE", str(root))
    return root


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    # AppTest keeps a module-level temporary folder; clean it so nothing warns at exit.
    from streamlit.testing.v1 import app_test

    app_test.TMP_DIR.cleanup()
