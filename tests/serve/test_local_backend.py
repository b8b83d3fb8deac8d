"""The local backend (transformers + peft) started from the registry: answers through the
gateway equal in-process transformers + peft for the same greedy request, adapters are served
under digest names and switched per request, streaming works, adapters load at run time, and a
split across two adapters sends each user to one of them."""

from __future__ import annotations

import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from llmops import Workspace
from tests.serve.conftest import start_gateway

pytest.importorskip("peft")

QUESTION = "what is the capital of france?"


def _random_adapter(base: Path, out: Path, seed: int) -> Path:
    """A LoRA adapter with random (non-zero) weights: it changes the model's answers."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base)
    config = LoraConfig(r=4, lora_alpha=16, target_modules=["q_proj", "v_proj"],
                        init_lora_weights=False)  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # peft vs transformers 5 renames
        peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(8.0)
    peft_model.save_pretrained(out)
    return out


def _reference(base: Path, adapter: Path | None, body: dict[str, Any]) -> str:
    """The same request answered in-process by transformers (+ peft)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if adapter is not None:
        from peft import PeftModel

        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            model = PeftModel.from_pretrained(model, adapter)
    model.eval()
    tokenizer = AutoTokenizer.from_pretrained(base)
    ids = tokenizer.apply_chat_template(body["messages"], add_generation_prompt=True,
                                        return_tensors="pt", return_dict=True)["input_ids"]  # fmt: skip
    with torch.no_grad():
        out = model.generate(ids, max_new_tokens=body["max_tokens"], do_sample=False,
                             pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)  # fmt: skip
    return str(tokenizer.decode(out[0][ids.shape[1] :], skip_special_tokens=True))


@pytest.fixture(scope="module")
def local_serving(
    tmp_path_factory: pytest.TempPathFactory, tiny_model: Path
) -> Iterator[dict[str, Any]]:
    """One workspace (SQLite) with the tiny base and three adapters, and one local backend
    serving the base with adapters 1 and 2 (3 is loaded at run time by a test)."""
    root = tmp_path_factory.mktemp("local-serving")
    ws = Workspace.init(root / "ws")
    ws.artifacts.push(tiny_model, name="tiny", kind="base-model")
    folders = {}
    for seed in (1, 2, 3):
        folders[seed] = _random_adapter(tiny_model, root / f"adapter{seed}", seed)
        ws.artifacts.push(folders[seed], name="tiny-lora", kind="adapter", parents=["tiny@1"])
    launched, proc = ws.serving.start("tiny@1", ["tiny-lora@1", "tiny-lora@2"], kind="local",
                                      port=_free_port(), timeout_s=180)  # fmt: skip
    try:
        yield {"ws": ws, "launched": launched, "folders": folders, "base": tiny_model}
    finally:
        ws.serving.stop(launched.backends[0].id)
        proc.wait(30)
        ws.close()


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _body(max_tokens: int = 8, **extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": QUESTION}], "max_tokens": max_tokens,
            "temperature": 0, **extra}  # fmt: skip


def test_the_backend_serves_digest_names_with_parents(local_serving: dict[str, Any]) -> None:
    launched = local_serving["launched"]
    ws: Workspace = local_serving["ws"]
    names = {m["id"]: m.get("parent") for m in launched.models}
    for ref in ("tiny-lora@1", "tiny-lora@2"):
        digest = ws.artifacts.get(ref).digest.partition(":")[2]
        assert (
            names[f"tiny-lora-{digest[:12]}"]
            == f"tiny-{ws.artifacts.get('tiny@1').digest.partition(':')[2][:12]}"
        )
    assert {b.ref for b in launched.backends} == {"tiny@1", "tiny-lora@1", "tiny-lora@2"}


def test_answers_through_the_gateway_equal_transformers_and_peft(
    local_serving: dict[str, Any],
) -> None:
    ws: Workspace = local_serving["ws"]
    with start_gateway(ws) as gw:
        for ref, adapter in (("tiny@1", None), ("tiny-lora@1", local_serving["folders"][1]),
                             ("tiny-lora@2", local_serving["folders"][2])):  # fmt: skip
            r = httpx.post(f"{gw.url}/chat/completions", json={"model": ref, **_body()}, timeout=60)
            assert r.status_code == 200, r.text
            got = r.json()["choices"][0]["message"]["content"]
            assert got == _reference(local_serving["base"], adapter, _body()), ref
    answers = {ref: _reference(local_serving["base"], a, _body())
               for ref, a in (("1", local_serving["folders"][1]), ("2", local_serving["folders"][2]))}  # fmt: skip
    assert answers["1"] != answers["2"]  # the adapters really differ


def test_streaming_from_the_local_backend(local_serving: dict[str, Any]) -> None:
    ws: Workspace = local_serving["ws"]
    with start_gateway(ws) as gw, httpx.stream(
        "POST", f"{gw.url}/chat/completions", timeout=60,
        json={"model": "tiny-lora@1", "stream": True, **_body(),
              "stream_options": {"include_usage": True}},
    ) as r:  # fmt: skip
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert text == _reference(local_serving["base"], local_serving["folders"][1], _body())
    assert chunks[-1]["usage"]["completion_tokens"] >= 1


def test_a_split_across_two_adapters(local_serving: dict[str, Any]) -> None:
    ws: Workspace = local_serving["ws"]
    ws.serving.traffic.set("tiny-bot", stable="tiny-lora@1", candidate="tiny-lora@2", weight=50,
                           sticky="header:x-user-id")  # fmt: skip
    expected = {
        "tiny-lora@1": _reference(local_serving["base"], local_serving["folders"][1], _body()),
        "tiny-lora@2": _reference(local_serving["base"], local_serving["folders"][2], _body()),
    }
    with start_gateway(ws) as gw:
        seen = set()
        for user in range(16):
            r = httpx.post(f"{gw.url}/chat/completions", json={"model": "tiny-bot", **_body()},
                           headers={"x-user-id": f"user-{user}"}, timeout=60)  # fmt: skip
            version = r.headers["x-llmops-model-version"]
            assert r.json()["choices"][0]["message"]["content"] == expected[version]
            seen.add(r.headers["x-llmops-arm"])
    assert seen == {"stable", "candidate"}


def test_an_adapter_loaded_at_run_time_is_served_under_its_digest_name(
    local_serving: dict[str, Any],
) -> None:
    ws: Workspace = local_serving["ws"]
    base_backend = next(b for b in local_serving["launched"].backends if b.ref == "tiny@1")
    loaded = ws.serving.load_adapter("tiny-lora@3", backend_id=base_backend.id)
    digest = ws.artifacts.get("tiny-lora@3").digest.partition(":")[2]
    assert loaded.served_name == f"tiny-lora-{digest[:12]}"
    with start_gateway(ws) as gw:
        r = httpx.post(f"{gw.url}/chat/completions", json={"model": "tiny-lora@3", **_body()},
                       timeout=60)  # fmt: skip
        assert r.json()["choices"][0]["message"]["content"] == _reference(
            local_serving["base"], local_serving["folders"][3], _body())  # fmt: skip
    ws.serving.unload_adapter(loaded.id)
    assert loaded.id not in {b.id for b in ws.serving.backends.list()}


def test_the_gateway_is_a_drop_in_for_the_openai_client(local_serving: dict[str, Any]) -> None:
    openai = pytest.importorskip("openai")
    ws: Workspace = local_serving["ws"]
    with start_gateway(ws) as gw:
        client = openai.OpenAI(base_url=gw.url, api_key="unused")
        reply = client.chat.completions.create(model="tiny-lora@1", **_body())  # type: ignore[call-overload]
    assert reply.choices[0].message.content == _reference(
        local_serving["base"], local_serving["folders"][1], _body())  # fmt: skip
