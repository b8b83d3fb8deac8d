"""Model calls for eval runs: one concurrency limit, per-endpoint rate limits, retries with
capped backoff (429, 5xx, timeouts, drops, malformed replies), identical requests in flight
shared, and the content-addressed response cache."""

from __future__ import annotations

import asyncio
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from llmops.evals.cache import ResponseCache, cache_key
from llmops.evals.providers import Completion, Provider, ProviderError, Request
from llmops.evals.suite import ModelSpec

__all__ = ["Engine", "Limits", "RunStats", "backoff", "clean_text", "make_request"]


class Limits(Protocol):
    """What the engine reads of a suite: retries and the per-call timeout."""

    @property
    def max_retries(self) -> int: ...

    @property
    def timeout_s(self) -> float: ...


class Engine:
    """Model calls with one concurrency limit, rate limits, retries and the cache."""

    def __init__(
        self,
        suite: Limits,
        *,
        concurrency: int,
        cache: ResponseCache | None,
        read_cache: bool,
        stats: RunStats,
        scrub: Callable[[str], str] | None = None,
    ) -> None:
        self.suite = suite
        self.scrub = scrub
        """Applied to answers before they are cached (keys a model repeats stay out of it)."""
        self.semaphore = asyncio.Semaphore(concurrency)
        self.cache = cache
        self.read_cache = read_cache
        self.stats = stats
        self._next_slot: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[Completion]] = {}

    async def _rate_limit(self, provider: Provider, rps: float | None) -> None:
        if not rps:
            return
        now = time.monotonic()
        slot = max(now, self._next_slot.get(provider.key, now))
        self._next_slot[provider.key] = slot + 1.0 / rps
        if slot > now:
            await asyncio.sleep(slot - now)

    async def call(
        self, provider: Provider, model: ModelSpec, request: Request, sample: int = 0
    ) -> Completion:
        key = cache_key(provider.key, request, sample)
        if self.cache is not None and self.read_cache:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.hits += 1
                return hit
        # Identical requests in flight at the same time are paid for once too.
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            completion = await self._call(provider, model, request)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(completion)
        if self.cache is not None:
            cached = completion
            if self.scrub is not None:
                cached = replace(completion, text=self.scrub(completion.text))
            self.cache.put(key, cached)
        return completion

    async def _call(self, provider: Provider, model: ModelSpec, request: Request) -> Completion:
        attempt = 0
        while True:
            async with self.semaphore:
                await self._rate_limit(provider, model.rate_limit_rps)
                try:
                    self.stats.calls += 1
                    completion = await provider.complete(request)
                    return replace(completion, text=clean_text(completion.text))
                except ProviderError as exc:
                    if not exc.retryable or attempt >= self.suite.max_retries:
                        tries = f" after {attempt + 1} attempts" if attempt else ""
                        raise ProviderError(f"{exc}{tries}", retryable=False) from None
                    delay = backoff(exc.retry_after_s, attempt, cap=self.suite.timeout_s)
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(delay)


def backoff(retry_after_s: float | None, attempt: int, *, cap: float) -> float:
    """Seconds to wait before retry ``attempt + 1``: the server's Retry-After when it is a sane
    number, else jittered exponential backoff; never more than ``cap`` (the suite's per-call
    timeout), so a hostile or broken ``Retry-After: 1e9`` cannot hang a run."""
    jitter = 0.5 + random.random()  # noqa: S311 - jitter, not crypto
    if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s >= 0:
        delay = retry_after_s * jitter
    else:
        delay = min(8.0, 0.25 * 2**attempt) * jitter
    return max(0.0, min(delay, cap))


def clean_text(text: str) -> str:
    """Model text with lone surrogates (broken UTF-8, bad JSON escapes) replaced, whatever the
    provider, so it can be cached, stored and printed."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def make_request(messages: list[dict[str, str]], model: ModelSpec) -> Request:
    return Request(
        messages=tuple((m["role"], m["content"]) for m in messages),
        temperature=model.temperature,
        max_tokens=model.max_tokens,
        seed=model.seed,
    )


@dataclass(slots=True)
class RunStats:
    calls: int = 0
    hits: int = 0
    retries: int = 0
    done: int = 0
    errors: int = 0
    started: float = field(default_factory=time.perf_counter)
    kinds: dict[str, list[Any]] = field(default_factory=dict)

    def saw_error(self, message: str) -> None:
        """Count an error under its kind (the message with numbers and quoted text blanked)."""
        kind = re.sub(r"'[^']*'|\"[^\"]*\"|\d+(\.\d+)?", "_", message)[:80]
        entry = self.kinds.setdefault(kind, [0, message[:500]])
        entry[0] += 1

    def error_kinds(self) -> list[dict[str, Any]]:
        return [
            {"kind": kind, "count": count, "example": example}
            for kind, (count, example) in sorted(self.kinds.items(), key=lambda kv: -kv[1][0])
        ]
