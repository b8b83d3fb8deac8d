"""The serve and canary step kinds on the tiny local model: a backend started by the pipeline
and reused while it answers, and a canary of a second adapter version against the first
behind the gateway, driven by synthetic traffic until the controller decides."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops import Workspace
from tests.serve.test_local_backend import _free_port, _random_adapter

pytest.importorskip("peft")
pytestmark = pytest.mark.slow


def test_serve_then_canary(
    tmp_path: Path, tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMOPS_DB_URL", raising=False)
    ws = Workspace.init(tmp_path / "ws", examples=False)
    ws.artifacts.push(tiny_model, name="tiny", kind="base-model")
    for seed in (1, 2):
        adapter = _random_adapter(tiny_model, tmp_path / f"adapter{seed}", seed)
        ws.artifacts.push(adapter, name="tiny-lora", kind="adapter", parents=["tiny@1"])
    (ws.root / "pipeline.yaml").write_text(f"""\
name: rollout
steps:
  - name: serve
    step: serve
    params: {{base: tiny@1, adapters: [tiny-lora@1, tiny-lora@2], port: {_free_port()},
              timeout_s: 180}}
  - name: canary
    step: canary
    needs: [serve]
    params:
      logical: bot
      stable: tiny-lora@1
      candidate: tiny-lora@2
      spec: {{steps: [50, 100], min_requests: 4, min_seconds: 0, min_stable_requests: 4,
              judge_model: {{provider: transformers, name: tiny@1}}, judge_method: likelihood,
              judge_sample: 1.0, min_judged: 2}}
      traffic: {{requests: 300, batch: 8, pause_s: 0.3, max_tokens: 4}}
""", encoding="utf-8")  # fmt: skip
    try:
        run = ws.run_pipeline()
        serve, canary = run.step("serve"), run.step("canary")
        assert serve.status == "ran" and serve.outputs["url"].startswith("http://127.0.0.1:")
        assert canary.status == "ran", canary.error
        assert canary.outputs["state"] in ("promoted", "rolled_back")
        assert canary.outputs["decisions"][0] == "start" and canary.outputs["reason"]
        # Mirrored requests were judged by the tiny model through verdict-word likelihoods.
        judged = canary.outputs["judged"]
        assert judged["judged"] >= 2
        assert judged["wins"] + judged["ties"] + judged["losses"] == judged["judged"]
        pairs = ws.serving.shadow_pairs("bot", limit=1000)
        replies = [r for p in pairs for r in ((p["judge_details"] or {}).get("replies") or [])]
        assert replies and all(r.startswith("likelihood: P(A)=") for r in replies)
        if canary.outputs["state"] == "promoted":
            assert ws.serving.traffic.get("bot").stable == "tiny-lora@2"
        again = ws.run_pipeline()
        assert [s.status for s in again.steps] == ["cached", "cached"]  # the server still answers
        ws.serving.stop_all()
        third = ws.run_pipeline()
        assert third.step("serve").status == "ran"  # its server was gone: started again
    finally:
        ws.serving.stop_all()
        ws.close()
