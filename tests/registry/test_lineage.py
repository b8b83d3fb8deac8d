"""Lineage: one query from a model version, training run or eval run to what it came from and
went to."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops import Workspace
from llmops.errors import NotFoundError
from llmops.evals.testing import MockServer
from tests.cli.test_prompts_cli import CLI
from tests.registry.conftest import evaluate, model_folder


def _trained(ws: Workspace, tmp_path: Path) -> str:
    """An adapter version made by a (recorded) training run."""
    data = ws.artifacts.push(tmp_path / "base", name="chat-data", kind="dataset").version
    ws.train_runs._create(
        id="run-00000000000a", recipe_name="recipes/sft.yaml", recipe={"lora": {"r": 8}},
        recipe_hash="blake3:recipe", dataset_fingerprint="blake3:rows", dataset_ref=data.ref,
        base_model="base@1", base_model_digest=ws.artifacts.get("base@1").digest, seed=1,
        environment={"libraries": {"llmops": "0.1.0"}}, output_dir="/tmp/x", max_steps=2,
    )  # fmt: skip
    version = ws.artifacts.push(
        model_folder(tmp_path / "a9", 9), name="support-lora", kind="adapter",
        parents=["base@1", data.ref], meta={"run_id": "run-00000000000a"},
    ).version  # fmt: skip
    ws.train_runs._update("run-00000000000a", status="completed", adapter_ref=version.ref)
    return version.ref


def test_a_model_versions_lineage_reaches_inputs_runs_evals_and_decisions(
    reg_ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    ref = _trained(reg_ws, tmp_path)
    run_id = evaluate(reg_ws, tmp_path, server.url, {"t": (ref, "good")})
    reg_ws.models.promote(ref, "production")
    graph = reg_ws.lineage(ref).to_json()
    kinds = {n["id"]: n["kind"] for n in graph["nodes"]}
    assert kinds[ref] == "adapter" and kinds["base@1"] == "base-model"
    assert kinds["chat-data@1"] == "dataset" and kinds["run-00000000000a"] == "run"
    assert kinds[run_id] == "eval-run" and kinds["blake3:recipe"] == "recipe"
    assert kinds["support-lora@production"] == "alias"
    edges = {(e["from"], e["to"], e["relation"]) for e in graph["edges"]}
    assert ("run-00000000000a", ref, "produced") in edges
    assert ("base@1", "run-00000000000a", "input_to") in edges
    assert (ref, run_id, "evaluated_in") in edges
    promoted = [n for n in graph["nodes"] if n["kind"] == "promotion"]
    assert [n["action"] for n in promoted] == ["model.promoted"]
    evals = next(n for n in graph["nodes"] if n["id"] == run_id)
    assert evals["targets"]["t"]["pass_rate"] == 1.0


def test_lineage_from_a_training_run_and_from_an_eval_run(
    reg_ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    ref = _trained(reg_ws, tmp_path)
    run_id = evaluate(reg_ws, tmp_path, server.url, {"t": (ref, "good")})
    from_run = {n["id"] for n in reg_ws.lineage("run-00000000000a").to_json()["nodes"]}
    assert {ref, "base@1", "chat-data@1", run_id} <= from_run
    from_eval = reg_ws.lineage(run_id).to_json()
    assert {ref, "run-00000000000a", "base@1"} <= {n["id"] for n in from_eval["nodes"]}
    with pytest.raises(NotFoundError, match="nothing named 'nope'"):
        reg_ws.lineage("nope")


def test_lineage_cli_draws_a_tree_and_prints_json(
    reg_ws: Workspace, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    ref = _trained(reg_ws, tmp_path)
    monkeypatch.chdir(reg_ws.root)
    cli = CLI(capsys)
    data = cli.json("lineage", ref)
    assert {"nodes", "edges"} <= data.keys()
    assert {"base-model", "dataset", "run"} <= {n["kind"] for n in data["nodes"]}
    out, _ = cli("lineage", ref)
    assert "came from" in out and "run run-00000000000a" in out and "base-model base@1" in out


def test_versions_trained_from_a_base_are_downstream_of_it(
    reg_ws: Workspace, tmp_path: Path
) -> None:
    ref = _trained(reg_ws, tmp_path)
    graph = reg_ws.lineage("base@1").to_json()
    made = {e["to"] for e in graph["edges"] if e["relation"] == "parent_of"}
    assert made == {ref}


def test_repeated_decisions_draw_as_one_dot_node_with_a_count() -> None:
    from llmops.registry.lineage import dot

    graph = {
        "root": "m@2",
        "nodes": [{"kind": "adapter", "id": "m@2"}]
        + [{"kind": "promotion", "id": f"m@2:model.promotion.refused:{i}"} for i in range(1, 11)]
        + [{"kind": "base-model", "id": 'odd"name\\'}],
        "edges": [
            {"from": "m@2", "to": f"m@2:model.promotion.refused:{i}", "relation": "decision"}
            for i in range(1, 11)
        ]
        + [{"from": 'odd"name\\', "to": "m@2", "relation": "parent"}],
    }
    text = dot(graph)
    assert text.count("model.promotion.refused") == 1 and "×10" in text
    assert text.count("->") == 2
    assert 'odd\\"name\\\\' in text  # a quote and a trailing backslash escaped for DOT
