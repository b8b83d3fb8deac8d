"""The local transformers provider: a base model folder and an adapter artifact, offline."""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

from llmops import Workspace


def _push_adapter(ws: Workspace, base: Path, folder: Path, seed: int) -> str:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(
        r=4,
        lora_alpha=64,
        target_modules="all-linear",
        init_lora_weights=False,
        task_type="CAUSAL_LM",
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft vs transformers 5 renames
        get_peft_model(model, config).save_pretrained(folder)
    return ws.artifacts.push(folder, name="tiny-lora", kind="adapter").version.ref


def test_base_and_adapter_targets_and_the_cache_follows_the_weights(
    ws: Workspace, tiny_model: Path, tmp_path: Path
) -> None:
    shutil.copytree(tiny_model, ws.root / "models" / "tiny")
    first = _push_adapter(ws, tiny_model, tmp_path / "a1", seed=1)
    suite = ws.root / "local.yaml"
    suite.write_text("""
targets:
  - name: base
    prompt: [{role: user, content: "what is {{ n }} plus {{ n }}?"}]
    model: {provider: transformers, name: models/tiny, max_tokens: 6}
  - name: tuned
    prompt: [{role: user, content: "what is {{ n }} plus {{ n }}?"}]
    model: {provider: transformers, name: models/tiny, adapter: tiny-lora, max_tokens: 6}
cases: [{vars: {n: 1}}, {vars: {n: 2}}]
default_assert: [{type: length, value: {max: 1000}}]
""")
    run = ws.evaluate(suite)
    errors = [r["error"] for r in ws.evals.results(run.run.run_id) if r["error"]]
    assert run.run.errors == 0 and run.calls == 4, errors
    results = list(ws.evals.results(run.run.run_id))
    outputs = {(r["case_index"], r["target"]): r["output"] for r in results}
    assert outputs[(0, "base")] != outputs[(0, "tuned")]  # the adapter changes the answers
    assert all(r["completion_tokens"] > 0 for r in results)
    assert ws.evaluate(suite).calls == 0  # everything cached
    second = _push_adapter(ws, tiny_model, tmp_path / "a2", seed=2)
    assert (first, second) == ("tiny-lora@1", "tiny-lora@2")
    again = ws.evaluate(suite)
    assert again.calls == 2 and again.cache_hits == 2  # new adapter weights: new calls; base cached
    # The run records exactly which weights each target used.
    used = again.run.model_identities
    folder_digest = ws.model_source("models/tiny").digest
    assert used["base"].digest == used["tuned"].digest == folder_digest
    assert used["tuned"].adapter_ref == "tiny-lora@2"
    assert used["tuned"].adapter_digest == ws.artifacts.get("tiny-lora@2").digest
    assert ws.evals.get(run.run.run_id).model_identities["tuned"].adapter_ref == "tiny-lora@1"
