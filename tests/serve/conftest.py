"""Serving fixtures: a workspace with a base model and adapter versions (tiny safetensors
files), stub backends (the eval harness's test server) that say which one answered, and a
gateway replica on a free port with a fast refresh."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from llmops import Workspace
from llmops.evals.testing import MockServer
from llmops.serve import Gateway
from tests.registry.conftest import model_folder


def tagged(tag: str) -> Callable[[dict[str, Any]], str]:
    """A responder that answers ``<tag>:<model field>:<last user message>``."""

    def respond(body: dict[str, Any]) -> str:
        return f"{tag}:{body.get('model')}:{body['messages'][-1]['content']}"

    return respond


@pytest.fixture
def serve_ws(ws: Workspace, tmp_path: Any) -> Workspace:
    """base@1 (base-model), support-lora@1 (alias production) and support-lora@2, 3 (adapters)."""
    ws.artifacts.push(model_folder(tmp_path / "base", 0, kind="base"), name="base",
                      kind="base-model")  # fmt: skip
    for seed in (1, 2, 3):
        ws.artifacts.push(model_folder(tmp_path / f"a{seed}", seed), name="support-lora",
                          kind="adapter", parents=["base@1"])  # fmt: skip
    ws.artifacts.alias("support-lora@1", "production")
    return ws


@pytest.fixture
def stable_server() -> Iterator[MockServer]:
    with MockServer(tagged("stable")) as s:
        yield s


@pytest.fixture
def candidate_server() -> Iterator[MockServer]:
    with MockServer(tagged("candidate")) as s:
        yield s


@pytest.fixture
def attached(
    serve_ws: Workspace, stable_server: MockServer, candidate_server: MockServer
) -> Workspace:
    """support-lora@1 served by the stable stub, @2 by the candidate stub; policy support-bot."""
    backends = serve_ws.serving.backends
    backends.attach("support-lora@1", url=stable_server.url, served_name="lora-v1")
    backends.attach("support-lora@2", url=candidate_server.url, served_name="lora-v2")
    serve_ws.serving.traffic.set("support-bot", stable="support-lora@production",
                                 candidate="support-lora@2", weight=0)  # fmt: skip
    return serve_ws


def start_gateway(ws: Workspace, **options: Any) -> Gateway:
    # The controller stays off unless a test turns it on (most tests reconcile by hand).
    options = {"port": 0, "refresh_s": 0.05, "flush_s": 0.05, "canary_interval_s": 3600, **options}
    return ws.serving.gateway(**options).start()


@pytest.fixture
def gateway(attached: Workspace) -> Iterator[Gateway]:
    gw = start_gateway(attached)
    yield gw
    gw.stop()


def wait_for(predicate: Callable[[], Any], timeout_s: float = 10.0) -> Any:
    """Poll until ``predicate()`` is truthy (the gateway refreshes and flushes in the
    background); its value."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("condition not met in time")


def chat(gw: Gateway, model: str = "support-bot", content: str = "hi", **extra: Any) -> Any:
    """POST a chat completion; the httpx response."""
    import httpx

    headers = extra.pop("headers", {})
    body = {"model": model, "messages": [{"role": "user", "content": content}], **extra}
    return httpx.post(f"{gw.url}/chat/completions", json=body, headers=headers, timeout=30)
