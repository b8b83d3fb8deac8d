"""Model versions: listing, show, semantic versions, rollback, history and the evidence index."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops import Workspace
from llmops.errors import ArtifactNotFoundError, InputError
from llmops.evals.testing import MockServer
from llmops.registry import evidence
from tests.registry.conftest import evaluate


def test_list_and_show_name_kinds_aliases_lineage_and_eval_runs(
    reg_ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    reg_ws.models.promote("support-lora@2", "staging")
    models = {m.name: m for m in reg_ws.models.list()}
    assert models["support-lora"].kind == "adapter" and models["support-lora"].latest_version == 2
    assert models["support-lora"].aliases == {"staging": 2} and models["base"].kind == "base-model"
    run_id = evaluate(reg_ws, tmp_path, server.url, {"t": ("support-lora@2", "good")})
    info = reg_ws.models.show("support-lora@staging")
    data = info.to_json()
    assert {"name", "version", "digest", "kind", "aliases", "eval_runs"} <= data.keys()
    assert data["eval_runs"] == [run_id] and info.base_model == "base@1"
    assert info.aliases == ["staging"] and reg_ws.models.show("support-lora@1").eval_runs == []
    with pytest.raises(ArtifactNotFoundError, match="not a model version"):
        reg_ws.artifacts.push(tmp_path / "base", name="data", kind="dataset")
        reg_ws.models.get("data")


def test_semantic_versions_are_unique_never_move_and_resolve(reg_ws: Workspace) -> None:
    reg_ws.models.set_semver("support-lora@1", "1.0.0")
    reg_ws.models.set_semver("support-lora@2", "v1.1.0-rc.1")
    assert reg_ws.models.get("support-lora@v1.1.0-rc.1").version == 2
    assert reg_ws.models.show("support-lora@1").semver == "1.0.0"
    with pytest.raises(InputError, match="already version 1"):
        reg_ws.models.set_semver("support-lora@2", "1.0.0")
    with pytest.raises(InputError, match=r"already is v1\.0\.0"):
        reg_ws.models.set_semver("support-lora@1", "2.0.0")
    with pytest.raises(InputError, match=r"'1\.0' is not a semantic version"):
        reg_ws.models.set_semver("support-lora@1", "1.0")
    with pytest.raises(ArtifactNotFoundError, match=r"no semantic version 9\.9\.9"):
        reg_ws.models.get("support-lora@v9.9.9")


def test_rollback_walks_back_through_the_holders(reg_ws: Workspace) -> None:
    with pytest.raises(InputError, match="no previous holder"):
        reg_ws.models.promote("support-lora@1", "production")
        reg_ws.models.rollback("support-lora@production")
    reg_ws.models.promote("support-lora@2", "production")
    reg_ws.artifacts.push(reg_ws.root / "prompts", name="support-lora", kind="adapter")  # @3
    reg_ws.models.promote("support-lora@3", "production")
    back = reg_ws.models.rollback("support-lora@production")
    assert (back.version, back.previous) == (2, 3)
    assert reg_ws.models.rollback("support-lora@production").version == 1  # not back to 3
    with pytest.raises(InputError, match="no previous holder"):
        reg_ws.models.rollback("support-lora@production")
    with pytest.raises(InputError, match="rollback takes NAME@ALIAS"):
        reg_ws.models.rollback("support-lora@2")
    actions = [e["action"] for e in reg_ws.models.history("support-lora")]
    assert actions.count("model.rollback") == 2


def test_the_evidence_index_matches_local_adapters_by_digest(reg_ws: Workspace) -> None:
    adapter = reg_ws.artifacts.get("support-lora@1")
    base = reg_ws.artifacts.get("base@1")
    identity = {"provider": "transformers", "name": "base", "ref": base.ref, "digest": base.digest,
                "adapter": "support-lora@1", "adapter_ref": adapter.ref,
                "adapter_digest": adapter.digest}  # fmt: skip
    reg_ws.eval_runs._create(
        id="eval-000000000001", suite_name="s", suite_digest="blake3:x", suite={},
        targets=["t"], cases=0, environment={"models": {"t": identity}},
    )  # fmt: skip
    reg_ws.eval_runs._finish("eval-000000000001", status="completed", summary=None)
    assert [t.run_id for t in evidence.tested_in(reg_ws.db, adapter.digest, kind="adapter")] == [
        "eval-000000000001"
    ]
    # The base ran with an adapter on top: no evidence for the base on its own.
    assert evidence.tested_in(reg_ws.db, base.digest, kind="base-model") == []
