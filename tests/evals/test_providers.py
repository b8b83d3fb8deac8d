"""Providers: the OpenAI-compatible HTTP client, errors that say whether to retry, and the
provider registry."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from llmops.evals.providers import PROVIDERS, ProviderError, Request, make_provider
from llmops.evals.suite import ModelSpec
from llmops.evals.testing import Fault, MockServer


def _complete(spec: ModelSpec) -> object:
    async def go() -> object:
        provider = make_provider(spec, timeout_s=5)
        try:
            request = Request(messages=(("user", "hi"),), temperature=0.0, max_tokens=16)
            return await provider.complete(request)
        finally:
            await provider.close()

    return asyncio.run(go())


def test_an_answer_with_usage_and_cost() -> None:
    with MockServer(lambda body: "hello there") as server:
        spec = ModelSpec(
            name="m", api_base=server.url, cost_per_1k_input=1.0, cost_per_1k_output=2.0
        )
        done = _complete(spec)
    assert done.text == "hello there"  # type: ignore[attr-defined]
    assert done.prompt_tokens > 0 and done.cost > 0  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("fault", "retryable", "after"),
    [(Fault("429", retry_after_s=3), True, 3.0), (Fault("500"), True, None),
     (Fault("malformed"), True, None)],
)  # fmt: skip
def test_failures_say_whether_a_retry_may_help(
    fault: Fault, retryable: bool, after: float | None
) -> None:
    with MockServer(lambda body: fault) as server, pytest.raises(ProviderError) as caught:
        _complete(ModelSpec(name="m", api_base=server.url))
    assert caught.value.retryable is retryable and caught.value.retry_after_s == after


def test_a_local_model_folder_that_is_missing_is_a_clear_error(tmp_path: Path) -> None:
    spec = ModelSpec(provider="transformers", name=str(tmp_path / "none"))
    with pytest.raises(ProviderError, match="no model folder"):
        _complete(spec)


def test_every_registered_provider_can_be_made() -> None:
    for name in PROVIDERS:
        extra = {"api_base": "http://127.0.0.1:9/v1"} if name == "openai" else {}
        provider = make_provider(ModelSpec(provider=name, name="m", **extra), timeout_s=1)
        assert provider.key.startswith(name)


def test_request_extras_are_part_of_a_providers_identity() -> None:
    hot = make_provider(
        ModelSpec(name="m", api_base="http://h/v1", extra={"top_p": 0.1}), timeout_s=1
    )
    cold = make_provider(
        ModelSpec(name="m", api_base="http://h/v1", extra={"top_p": 0.9}), timeout_s=1
    )
    plain = make_provider(ModelSpec(name="m", api_base="http://h/v1"), timeout_s=1)
    assert len({hot.key, cold.key, plain.key}) == 3
