"""Exports to Kubernetes engines: the manifests' structure (llm-d InferenceModelRewrite, KServe
LLMInferenceService) from a traffic policy."""

from __future__ import annotations

import pytest
import yaml
from pydantic import ValidationError

from llmops import Workspace
from llmops.serve.export import ExportArm, llmd_manifest
from llmops.serve.vllm import served_name


def _name(ws: Workspace, ref: str) -> str:
    version = ws.models.get(ref)
    return served_name(version.name, version.digest)


def test_llmd_rewrite_splits_the_logical_name_by_weight(serve_ws: Workspace) -> None:
    serve_ws.serving.traffic.set("support-bot", stable="support-lora@production",
                                 candidate="support-lora@2", weight=12.5)  # fmt: skip
    doc = yaml.safe_load(serve_ws.serving.export("support-bot", format="llm-d", pool="vllm-pool",
                                                 namespace="ml"))  # fmt: skip
    assert (doc["apiVersion"], doc["kind"]) == ("llm-d.ai/v1alpha2", "InferenceModelRewrite")
    assert doc["metadata"]["name"] == "support-bot" and doc["metadata"]["namespace"] == "ml"
    assert doc["spec"]["poolRef"]["name"] == "vllm-pool"
    (rule,) = doc["spec"]["rules"]
    assert rule["matches"] == [{"model": {"type": "Exact", "value": "support-bot"}}]
    assert rule["targets"] == [
        {"modelRewrite": _name(serve_ws, "support-lora@1"), "weight": 8750},
        {"modelRewrite": _name(serve_ws, "support-lora@2"), "weight": 1250},
    ]
    assert "not sticky" in doc["metadata"]["annotations"]["llmops.dev/note"]


def test_a_killed_or_zero_weight_candidate_is_left_out(serve_ws: Workspace) -> None:
    serve_ws.serving.traffic.set("bot", stable="support-lora@1", candidate="support-lora@2",
                                 weight=40)  # fmt: skip
    serve_ws.serving.traffic.kill("bot")
    doc = yaml.safe_load(serve_ws.serving.export("bot", format="llm-d"))
    assert [t["weight"] for t in doc["spec"]["rules"][0]["targets"]] == [10000]


def test_kserve_service_carries_the_base_and_both_adapters(serve_ws: Workspace) -> None:
    serve_ws.serving.traffic.set("support-bot", stable="support-lora@1", candidate="support-lora@2",
                                 weight=10)  # fmt: skip
    doc = yaml.safe_load(serve_ws.serving.export(
        "support-bot", format="kserve", uri="s3://models/{model}/{served_name}"))  # fmt: skip
    assert (doc["apiVersion"], doc["kind"]) == ("serving.kserve.io/v1alpha2", "LLMInferenceService")
    base = _name(serve_ws, "base@1")
    assert doc["spec"]["model"]["name"] == base
    assert doc["spec"]["model"]["uri"] == f"s3://models/base/{base}"
    adapters = doc["spec"]["model"]["lora"]["adapters"]
    assert [a["name"] for a in adapters] == [_name(serve_ws, "support-lora@1"),
                                              _name(serve_ws, "support-lora@2")]  # fmt: skip
    assert all(a["uri"].startswith("s3://models/support-lora/") for a in adapters)


def test_manifests_are_typed_weights_are_at_least_one() -> None:
    arm = ExportArm(arm="candidate", model="m@1", served_name="m-1", uri="x", weight=0.001)
    doc = llmd_manifest("bot", [arm], pool="p")
    assert doc.spec.rules[0].targets[0].weight == 1
    with pytest.raises(ValidationError):
        ExportArm(arm="canary", model="m@1", served_name="m", uri="x", weight=1)  # type: ignore[arg-type]
