"""Model providers: how an eval reaches a model.

Registered by name in :data:`PROVIDERS`:

- ``openai``: any OpenAI-compatible HTTP server (vLLM, llama.cpp, our :mod:`~llmops.evals.testing`
  server, OpenAI itself) through ``POST {api_base}/chat/completions``;
- ``litellm``: hosted providers through litellm (``pip install 'llmops[eval]'``; imported only
  when used);
- ``transformers``: a local model (artifact reference or folder) with an optional adapter
  artifact, for offline work.

Every call returns a :class:`Completion` with the text, token usage, cost and latency, or raises
:class:`ProviderError` saying whether a retry may help.
"""

from __future__ import annotations

import asyncio
import importlib.util
import json
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from llmops._plugins import Registry

if TYPE_CHECKING:
    from llmops.artifacts.resolver import ModelResolver
from llmops.evals.suite import ModelSpec

__all__ = [
    "PROVIDERS",
    "Completion",
    "Provider",
    "ProviderError",
    "Request",
    "make_provider",
]


@dataclass(frozen=True, slots=True)
class Request:
    """One chat completion request."""

    messages: tuple[tuple[str, str], ...]
    """``(role, content)`` pairs."""
    temperature: float
    max_tokens: int
    seed: int | None = None
    choices: tuple[str, ...] = ()
    """Score these replies instead of generating one (a likelihood judge): the completion's
    ``choice_logprobs`` holds the log-probability of each as the start of the reply, and its
    text is the most likely one."""

    def to_json(self) -> dict[str, Any]:
        """Plain data (also the cache key's content)."""
        out: dict[str, Any] = {
            "messages": [{"role": r, "content": c} for r, c in self.messages],
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.choices:
            out["choices"] = list(self.choices)
        return out


@dataclass(frozen=True, slots=True)
class Completion:
    """A model's reply and what it cost."""

    text: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    latency_s: float = 0.0
    cached: bool = False
    choice_logprobs: tuple[float, ...] = ()
    """For a request with ``choices``: each choice's log-probability (``-inf``: never)."""

    def to_json(self) -> dict[str, Any]:
        """Plain data for the cache."""
        out: dict[str, Any] = {
            "text": self.text,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": self.cost,
            "latency_s": self.latency_s,
        }
        if self.choice_logprobs:  # JSON has no -inf: None stands for it
            out["choice_logprobs"] = [None if math.isinf(x) else x for x in self.choice_logprobs]
        return out


class ProviderError(Exception):
    """A call failed; ``retryable`` when trying again may help (429, 5xx, timeouts, drops)."""

    def __init__(
        self, message: str, *, retryable: bool, retry_after_s: float | None = None
    ) -> None:
        super().__init__(message)
        self.retryable = retryable
        self.retry_after_s = retry_after_s


class Provider(Protocol):
    """Something that completes chats."""

    key: str
    """Identity for caching and rate limits (kind, endpoint, model)."""

    async def complete(self, request: Request) -> Completion:
        """One call, without retries."""
        ...

    async def close(self) -> None:
        """Release connections."""
        ...


def _extra_key(spec: ModelSpec) -> str:
    """The request fields a spec adds (``top_p``, ``stop`` ...): part of what identifies an
    answer, so two targets differing only there never share cached answers."""
    return "|" + json.dumps(spec.extra, sort_keys=True, default=str) if spec.extra else ""


def _cost(spec: ModelSpec, prompt_tokens: int, completion_tokens: int) -> float:
    return (
        prompt_tokens * spec.cost_per_1k_input + completion_tokens * spec.cost_per_1k_output
    ) / 1000


class OpenAIProvider:
    """An OpenAI-compatible chat completions endpoint over HTTP (aiohttp)."""

    def __init__(self, spec: ModelSpec, *, timeout_s: float) -> None:
        if not spec.api_base:
            raise ValueError("provider 'openai' needs model.api_base")
        self.spec = spec
        self.url = spec.api_base.rstrip("/") + "/chat/completions"
        self.key = f"openai|{spec.api_base}|{spec.name}{_extra_key(spec)}"
        self.timeout_s = timeout_s
        self._session: Any = None
        api_key = os.environ.get(spec.api_key_env, "") if spec.api_key_env else ""
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    async def _client(self) -> Any:
        if self._session is None:
            import aiohttp

            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
                connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
                headers=self._headers,
            )
        return self._session

    async def complete(self, request: Request) -> Completion:
        import aiohttp

        payload = request.to_json()
        payload.pop("choices", None)
        if request.choices:  # one token, with the most likely next tokens and their logprobs
            payload.update(max_tokens=1, temperature=0, logprobs=True, top_logprobs=20)
        body = {"model": self.spec.name, **payload, **self.spec.extra}
        if body.get("seed") is None:
            body.pop("seed")
        session = await self._client()
        started = time.perf_counter()
        try:
            async with session.post(self.url, json=body) as response:
                raw = await response.read()
                status = response.status
                retry_after = response.headers.get("Retry-After")
        except TimeoutError:
            raise ProviderError(f"timed out after {self.timeout_s:g} s", retryable=True) from None
        except aiohttp.ClientError as exc:
            raise ProviderError(
                f"connection failed: {type(exc).__name__}: {exc}", retryable=True
            ) from None
        latency = time.perf_counter() - started
        if status == 429 or status >= 500:
            raise ProviderError(
                f"HTTP {status} from {self.url}",
                retryable=True,
                retry_after_s=_seconds(retry_after),
            )
        if status >= 400:
            raise ProviderError(f"HTTP {status} from {self.url}: {_snippet(raw)}", retryable=False)
        try:
            data = json.loads(raw.decode("utf-8", "replace"))
            text = str(data["choices"][0]["message"]["content"] or "")
        except (json.JSONDecodeError, UnicodeDecodeError, KeyError, IndexError, TypeError):
            raise ProviderError(
                f"malformed response from {self.url}: {_snippet(raw)}", retryable=True
            ) from None
        usage = data.get("usage") or {}
        pt, ct = int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0)
        if request.choices:
            scores = _first_token_scores(data, request.choices, self.url)
            best = max(range(len(scores)), key=lambda i: scores[i])
            text = request.choices[best]
            return Completion(
                text, pt, ct, _cost(self.spec, pt, ct), latency, choice_logprobs=scores
            )
        return Completion(str(text), pt, ct, _cost(self.spec, pt, ct), latency)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


def _first_token_scores(data: Any, choices: tuple[str, ...], url: str) -> tuple[float, ...]:
    """Each choice's log-probability from a reply's ``top_logprobs`` of its first token: a
    token counts for the one choice it begins, compared without case, spaces or trailing
    punctuation (``Pass``, `` A:``); a choice no likely token begins is -inf.

    Raises:
        ProviderError: The server sent no log-probabilities (it does not support them), or
            malformed ones (not a number, NaN, above 0).
    """
    try:
        top = data["choices"][0]["logprobs"]["content"][0]["top_logprobs"]
        pairs = [(t["token"], t["logprob"]) for t in top]
    except (KeyError, IndexError, TypeError):
        raise ProviderError(
            f"{url} sent no top_logprobs for the first token, which judge.method 'likelihood'"
            " needs; use a server that supports logprobs (vLLM, OpenAI) or method 'generate'",
            retryable=False,
        ) from None
    scores = [-math.inf] * len(choices)
    for token, logprob in pairs:
        ok = isinstance(logprob, int | float) and not isinstance(logprob, bool)
        if not ok or math.isnan(logprob) or logprob > 1e-6 or not isinstance(token, str):
            raise ProviderError(
                f"{url} sent a malformed top_logprobs entry (token {str(token)[:40]!r},"
                f" logprob {str(logprob)[:40]!r}): a log-probability is a number <= 0",
                retryable=False,
            )
        word = token.strip().rstrip(".,:;!?)\"'").upper()
        owners = [i for i, c in enumerate(choices) if word and c.upper().startswith(word)]
        if len(owners) == 1:
            i, value = owners[0], min(float(logprob), 0.0)
            high, low = max(scores[i], value), min(scores[i], value)
            scores[i] = high if math.isinf(low) else high + math.log1p(math.exp(low - high))
    return tuple(scores)


def _seconds(value: str | None) -> float | None:
    try:
        return float(value) if value else None
    except ValueError:
        return None


def _snippet(raw: bytes) -> str:
    return raw[:200].decode("utf-8", "replace").replace("\n", " ")


class LiteLLMProvider:
    """Hosted providers through litellm (imported on first use)."""

    def __init__(self, spec: ModelSpec, *, timeout_s: float) -> None:
        self.spec = spec
        self.timeout_s = timeout_s
        self.key = f"litellm|{spec.api_base or ''}|{spec.name}{_extra_key(spec)}"

    async def complete(self, request: Request) -> Completion:
        if request.choices:
            raise ProviderError(
                "judge.method 'likelihood' needs a provider with token log-probabilities:"
                " 'transformers', or 'openai' with a server that sends them (vLLM, OpenAI)",
                retryable=False,
            )
        os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
        if importlib.util.find_spec("litellm") is None:
            raise ProviderError(
                "provider 'litellm' needs litellm: pip install 'llmops[eval]'", retryable=False
            )
        import litellm

        litellm.suppress_debug_info = True  # it prints hints on stdout, which --json owns
        kwargs: dict[str, Any] = {
            "model": self.spec.name,
            "timeout": self.timeout_s,
            "num_retries": 0,
            **request.to_json(),
            **self.spec.extra,
        }
        if kwargs.get("seed") is None:
            kwargs.pop("seed")
        if self.spec.api_base:
            kwargs["api_base"] = self.spec.api_base
        if self.spec.api_key_env:
            kwargs["api_key"] = os.environ.get(self.spec.api_key_env, "")
        started = time.perf_counter()
        try:
            response = await litellm.acompletion(**kwargs)
        except Exception as exc:
            status = getattr(exc, "status_code", None)
            retryable = status is None or status == 429 or status >= 500
            raise ProviderError(
                f"litellm: {type(exc).__name__}: {exc}"[:500], retryable=retryable
            ) from None
        latency = time.perf_counter() - started
        text = str(response.choices[0].message.content or "")
        usage = getattr(response, "usage", None)
        pt = int(getattr(usage, "prompt_tokens", 0) or 0)
        ct = int(getattr(usage, "completion_tokens", 0) or 0)
        cost = _cost(self.spec, pt, ct)
        if not cost:
            try:
                cost = float(litellm.completion_cost(completion_response=response) or 0.0)
            except Exception:  # unknown model in litellm's price list
                cost = 0.0
        return Completion(str(text), pt, ct, cost, latency)

    async def close(self) -> None:
        return None


class LocalProvider:
    """A transformers model (with an optional LoRA adapter) on this machine.

    Generation runs in a worker thread, one call at a time (a model is not re-entrant, and two
    models would only fight over the same cores). The cache identity names the exact weights: the
    artifact versions' digests, so a retrained adapter under the same name is a new model.
    """

    _lock = threading.Lock()

    def __init__(self, spec: ModelSpec, *, models: ModelResolver | None) -> None:
        self.spec = spec
        self.models = models
        self.key = f"transformers|{self._identity(spec.name)}|{self._identity(spec.adapter)}"
        self._model: Any = None
        self._tokenizer: Any = None

    def _identity(self, ref: str | None) -> str:
        if not ref:
            return ""
        if self.models is None:
            return str(Path(ref).resolve())
        try:
            return self.models.source(ref).digest
        except Exception:  # reported when the model loads, per case
            return ref

    def _folder(self, ref: str) -> Path:
        if self.models is None:
            if not Path(ref).is_dir():
                raise ProviderError(f"no model folder {ref!r}", retryable=False)
            return Path(ref)
        return self.models.local_dir(self.models.source(ref))

    def _load(self) -> None:
        from llmops._extras import quiet_import, require

        require("torch", "transformers", feature="provider 'transformers'")
        if self.spec.adapter:
            quiet_import("peft", feature="an adapter on provider 'transformers'")
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
        base = self._folder(self.spec.name)
        model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
        tokenizer_dir = base
        if self.spec.adapter:
            import warnings

            from peft import PeftModel

            adapter = self._folder(self.spec.adapter)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", FutureWarning)  # peft vs transformers 5 renames
                model = PeftModel.from_pretrained(model, adapter)
            if (adapter / "tokenizer_config.json").is_file():  # trained with its own template
                tokenizer_dir = adapter
        model.eval()
        self._tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self._model = model

    def _generate(self, request: Request) -> Completion:
        import torch

        with self._lock:
            if self._model is None:
                self._load()
            started = time.perf_counter()
            messages = [{"role": r, "content": c} for r, c in request.messages]
            ids = self._tokenizer.apply_chat_template(
                messages, add_generation_prompt=True, return_tensors="pt", return_dict=True
            )["input_ids"]
            if request.choices:
                scores = self._score_choices(ids, request.choices)
                best = max(range(len(scores)), key=lambda i: scores[i])
                latency = time.perf_counter() - started
                return Completion(request.choices[best], int(ids.shape[1]), 0, 0.0, latency,
                                  choice_logprobs=scores)  # fmt: skip
            sample = request.temperature > 0
            if request.seed is not None:
                torch.manual_seed(request.seed)
            with torch.no_grad():
                out = self._model.generate(
                    ids,
                    max_new_tokens=request.max_tokens,
                    do_sample=sample,
                    temperature=request.temperature if sample else None,
                    top_p=None,
                    top_k=None,
                    pad_token_id=self._tokenizer.pad_token_id or self._tokenizer.eos_token_id,
                )
            new = out[0][ids.shape[1] :]
            text = self._tokenizer.decode(new, skip_special_tokens=True)
            return Completion(
                text, int(ids.shape[1]), int(new.shape[0]), 0.0, time.perf_counter() - started
            )

    def _score_choices(self, ids: Any, choices: tuple[str, ...]) -> tuple[float, ...]:
        """The log-probability of each choice's tokens following the prompt ``ids``: the prompt
        is read once; a choice of several tokens continues from a copy of its cache."""
        import copy
        import inspect

        import torch

        # transformers 5.x names the key/value cache ``cache``; 4.x ``past_key_values``.
        inner = (
            self._model.get_base_model() if hasattr(self._model, "get_base_model") else self._model
        )
        name = "cache" if "cache" in inspect.signature(inner.forward).parameters else None
        with torch.no_grad():
            out = self._model(ids, use_cache=True)
            cache = getattr(out, "cache", None) or out.past_key_values
            first = torch.log_softmax(out.logits[0, -1].float(), dim=-1)
            scores = []
            for choice in choices:
                tokens = self._tokenizer(choice, add_special_tokens=False)["input_ids"]
                score = float(first[tokens[0]])
                if len(tokens) > 1:
                    rest = self._model(
                        torch.tensor([tokens[:-1]]),
                        use_cache=True,
                        **{name or "past_key_values": copy.deepcopy(cache)},
                    )
                    logprobs = torch.log_softmax(rest.logits[0].float(), dim=-1)
                    score += float(sum(logprobs[i, t] for i, t in enumerate(tokens[1:])))
                scores.append(score)
        return tuple(scores)

    async def complete(self, request: Request) -> Completion:
        try:
            return await asyncio.to_thread(self._generate, request)
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(
                f"local generation failed: {type(exc).__name__}: {exc}", retryable=False
            ) from None

    async def close(self) -> None:
        return None


ProviderFactory = Callable[..., Provider]
"""``factory(spec, *, models, timeout_s) -> Provider``."""

PROVIDERS: Registry[ProviderFactory] = Registry("provider", group="llmops.providers")
"""Provider kinds by name (third-party ones through the ``llmops.providers`` entry points)."""
PROVIDERS.register(
    "openai", lambda spec, *, models, timeout_s: OpenAIProvider(spec, timeout_s=timeout_s)
)
PROVIDERS.register(
    "litellm", lambda spec, *, models, timeout_s: LiteLLMProvider(spec, timeout_s=timeout_s)
)
PROVIDERS.register(
    "transformers", lambda spec, *, models, timeout_s: LocalProvider(spec, models=models)
)


def make_provider(
    spec: ModelSpec, *, models: ModelResolver | None = None, timeout_s: float
) -> Provider:
    """The provider for a model spec (its ``provider`` names the kind).

    Raises:
        ValueError: The kind is not registered.
    """
    return PROVIDERS.get(spec.provider)(spec, models=models, timeout_s=timeout_s)
