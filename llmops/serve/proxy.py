"""Forwarding to backends: try an arm's backends until one starts answering, fail over from a
broken candidate to stable before the first byte, relay streams, record every attempt (request
log and metrics), and mirror a share of answered requests to the other arm (shadow pairs)."""

from __future__ import annotations

import asyncio
import json
import logging
import random
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

from llmops.db.models import ServeRequest, ShadowPair
from llmops.db.timestamps import utcnow
from llmops.serve.snapshot import ArmRoute, Route, Target

if TYPE_CHECKING:
    import aiohttp
    from aiohttp import web

    from llmops.serve.gateway import GatewayConfig
    from llmops.serve.metrics import Metrics, RequestLog

__all__ = ["Call", "Failed", "Proxy", "error_response"]

log = logging.getLogger("llmops.gateway")


class Failed(Exception):
    """A backend attempt failed before anything reached the client."""

    def __init__(self, detail: str, status: int = 502) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status


def error_response(
    status: int,
    message: str,
    type_: str,
    *,
    code: str | None = None,
    headers: dict[str, str] | None = None,
) -> web.Response:
    from aiohttp import web

    body = {"error": {"message": message, "type": type_, "param": None, "code": code}}
    return web.json_response(body, status=status, headers=headers)


def _answer_text(data: Any) -> str:
    try:
        return str(data["choices"][0]["message"]["content"] or "")
    except (KeyError, IndexError, TypeError):
        return ""


_MAX_TOKENS = 10**9


def _count(value: Any) -> int:
    """A token count a backend reported, or 0 when it is not a sane one."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_TOKENS:
        return value
    return 0


def _stream_text(raw: bytes) -> tuple[str, int, int]:
    """The text of an SSE chat stream, its prompt tokens (0 unless the stream reports usage)
    and completion tokens (from ``usage``, else one per content chunk)."""
    parts: list[str] = []
    prompt = tokens = chunks = 0
    for line in raw.split(b"\n"):
        if not line.startswith(b"data:"):
            continue
        payload = line[5:].strip()
        if payload == b"[DONE]":
            continue
        try:
            event = json.loads(payload)
        except (ValueError, RecursionError):
            continue
        usage = event.get("usage") if isinstance(event, dict) else None
        if isinstance(usage, dict):
            prompt = _count(usage.get("prompt_tokens"))
            tokens = _count(usage.get("completion_tokens"))
        try:
            delta = event["choices"][0]["delta"].get("content")
        except (KeyError, IndexError, TypeError, AttributeError):
            continue
        if delta:
            parts.append(str(delta))
            chunks += 1
    return "".join(parts), prompt, tokens or chunks


@dataclass(slots=True, kw_only=True)
class Call:
    """One request on its way through the gateway."""

    route: Route
    arm: str
    body: dict[str, Any]
    response_id: str
    started: float
    key_id: str | None
    candidate: ArmRoute | None = None
    """The candidate this request would go to (a bandit's pick among several)."""
    started_arm: float | None = None
    ttft_ms: float | None = None
    failover: bool = False
    finished: float | None = None
    out: Any = None
    """The streaming response, once started."""


class Proxy:
    """The forwarding half of a gateway replica (one per running gateway)."""

    def __init__(
        self,
        config: GatewayConfig,
        *,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        log: RequestLog,
        replica: str,
    ) -> None:
        self.config = config
        self._session = session
        self.metrics = metrics
        self._log = log
        self.replica = replica
        self.recent: OrderedDict[str, tuple[str, str, str, str | None]] = OrderedDict()
        """Response id -> (logical, arm, model, key id) of the latest answers (feedback)."""
        self.tasks: set[asyncio.Task[None]] = set()
        self._shadow_inflight = 0
        self._rng = random.Random()  # noqa: S311 - traffic sampling, not secrets
        import aiohttp

        # A candidate that stays silent longer than candidate_timeout_s fails over.
        self._timeouts = {
            is_candidate: aiohttp.ClientTimeout(
                total=config.timeout_s, sock_connect=10,
                sock_read=config.candidate_timeout_s if is_candidate else config.timeout_s,
            )
            for is_candidate in (False, True)
        }  # fmt: skip

    async def handle(self, request: web.Request, ctx: Call) -> web.StreamResponse:
        """Answer ``ctx`` from its arm, failing over from a broken candidate to stable."""
        route = ctx.route
        if ctx.candidate is None:
            ctx.candidate = route.candidate
        arm = ctx.candidate if ctx.arm in ("candidate", "cohort") else route.stable
        assert arm is not None
        try:
            return await self._handle(request, ctx, arm)
        except asyncio.CancelledError:  # the client went away before the answer was done
            if ctx.finished is None:
                self._record(ctx, arm, status=499, error=False, failover=ctx.failover)
            raise

    async def _handle(self, request: web.Request, ctx: Call, arm: ArmRoute) -> web.StreamResponse:
        route = ctx.route
        logical = route.logical
        arm_name = ctx.arm
        try:
            return await self._answer(request, ctx, arm)
        except Failed as failure:
            if arm_name in ("candidate", "cohort"):  # failover: stable answers instead
                # The candidate's failed attempt is its own row (its own id): a candidate error.
                self._record(ctx, arm, status=failure.status, error=True, failover=True,
                             attempt="fo-")  # fmt: skip
                ctx.failover = True
                ctx.arm = "stable"
                ctx.started_arm = time.perf_counter()
                try:
                    return await self._answer(request, ctx, route.stable)
                except Failed as second:
                    failure = second
            self._record(
                ctx,
                route.stable if ctx.arm == "stable" else arm,
                status=failure.status,
                error=True,
                failover=ctx.failover,
            )
            return error_response(
                failure.status,
                f"no backend answered for {logical!r}: {failure.detail}",
                "api_error",
                code="backend_unavailable",
                headers=self._headers(ctx, route.stable),
            )

    def _headers(self, ctx: Call, arm: ArmRoute) -> dict[str, str]:
        return {
            "x-llmops-arm": "direct" if ctx.route.direct else ctx.arm,
            "x-llmops-model-version": arm.model or arm.ref,
            "x-llmops-response-id": ctx.response_id,
        }

    async def _answer(self, request: web.Request, ctx: Call, arm: ArmRoute) -> web.StreamResponse:
        """Try the arm's backends in turn until one starts answering."""
        if not arm.targets:
            raise Failed(
                f"no backend serves {arm.model or arm.ref} (start or attach one: `llmops serve"
                " start` / `llmops serve attach`; see `llmops serve list`)",
                status=503,
            )
        targets = list(arm.targets)
        if len(targets) > 1:
            offset = self._rng.randrange(len(targets))
            targets = targets[offset:] + targets[:offset]
        last: Failed | None = None
        for target in targets:
            try:
                return await self._forward(request, ctx, arm, target)
            except Failed as failure:
                last = failure
        assert last is not None
        raise last

    async def _forward(
        self, request: web.Request, ctx: Call, arm: ArmRoute, target: Target
    ) -> web.StreamResponse:
        import aiohttp
        from aiohttp import web

        assert self._session is not None
        payload = dict(ctx.body, model=target.served_name)
        stream = payload.get("stream") is True
        timeout = self._timeouts[ctx.arm in ("candidate", "cohort")]
        try:
            backend = await self._session.post(
                f"{target.url}/chat/completions",
                data=json.dumps(payload),
                headers={"Content-Type": "application/json"},
                timeout=timeout,
            )
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise Failed(f"{target.url}: {type(exc).__name__}: {exc}"[:300]) from None
        done = False
        try:
            # 5xx, 404 (the backend does not serve this name: the adapter was never loaded
            # there, or was unloaded) and 429 (overloaded): this backend cannot answer; another
            # one, or stable, may. Other 4xx are the request's own fault: passed through.
            if backend.status >= 500 or backend.status in (404, 429):
                detail = (await backend.read())[:200].decode("utf-8", "replace")
                raise Failed(f"{target.url} answered {backend.status}: {detail}")
            headers = self._headers(ctx, arm)
            if not stream or backend.status != 200:
                try:
                    data = await backend.read()
                except (aiohttp.ClientError, TimeoutError) as exc:
                    raise Failed(f"{target.url}: {type(exc).__name__}") from None
                done = True
                self._finish(ctx, arm, data, status=backend.status, streamed=False)
                return web.Response(
                    body=data,
                    status=backend.status,
                    headers=headers,
                    content_type=backend.content_type,
                )
            # Streaming: the first chunk decides between failover and commitment.
            try:
                first = await backend.content.readany()
            except (aiohttp.ClientError, TimeoutError) as exc:
                raise Failed(f"{target.url}: {type(exc).__name__} before the first byte") from None
            ctx.ttft_ms = (time.perf_counter() - ctx.started) * 1000
            done = await self._relay(request, ctx, arm, backend, first, headers)
            return cast("web.StreamResponse", ctx.out)
        finally:
            if done:
                backend.release()
            else:
                backend.close()

    async def _relay(
        self,
        request: web.Request,
        ctx: Call,
        arm: ArmRoute,
        backend: aiohttp.ClientResponse,
        first: bytes,
        headers: dict[str, str],
    ) -> bool:
        """Stream the backend's answer to the client; True when it ended cleanly."""
        import aiohttp
        from aiohttp import web

        out = ctx.out = web.StreamResponse(
            status=200,
            headers={
                **headers,
                "Content-Type": backend.headers.get("Content-Type", "text/event-stream"),
                "Cache-Control": "no-cache",
            },
        )
        kept = bytearray(first)
        try:
            await out.prepare(request)
            await out.write(first)
            async for chunk in backend.content.iter_any():
                if len(kept) < 4_000_000:
                    kept += chunk
                await out.write(chunk)
        except (aiohttp.ClientPayloadError, aiohttp.ServerDisconnectedError, TimeoutError):
            self._record(ctx, arm, status=502, error=True, failover=ctx.failover)
            # The backend broke mid-stream: the client must see a broken stream, never a
            # clean end of a truncated answer.
            if request.transport is not None:
                request.transport.abort()
            return False
        except (ConnectionResetError, asyncio.CancelledError):
            # The client went away: closing the backend response cancels the backend's work.
            self._record(ctx, arm, status=499, error=False, failover=ctx.failover)
            raise
        await out.write_eof()
        self._finish(ctx, arm, bytes(kept), status=200, streamed=True)
        return True

    def _finish(
        self, ctx: Call, arm: ArmRoute, data: bytes, *, status: int, streamed: bool
    ) -> None:
        prompt_tokens = completion_tokens = 0
        text = ""
        if streamed:
            text, prompt_tokens, completion_tokens = _stream_text(data)
        elif status == 200:
            try:
                parsed = json.loads(data)
                usage = parsed.get("usage") or {}
                prompt_tokens = _count(usage.get("prompt_tokens"))
                completion_tokens = _count(usage.get("completion_tokens"))
                text = _answer_text(parsed)
            except (ValueError, AttributeError, TypeError, RecursionError):
                pass
        self._record(
            ctx,
            arm,
            status=status,
            error=status >= 500,
            failover=ctx.failover,
            prompt_tokens=prompt_tokens,
            completion_tokens=completion_tokens,
            text=text,
        )
        route = ctx.route
        if (
            status == 200
            and ctx.arm in ("stable", "candidate")
            and not ctx.failover
            and ctx.candidate is not None
            and route.shadow > 0
            and not route.killed
            and self._rng.random() < route.shadow
            and self._shadow_inflight < self.config.max_shadow_inflight
        ):
            task = asyncio.get_running_loop().create_task(self._shadow(ctx, arm, text))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)

    def _record(
        self,
        ctx: Call,
        arm: ArmRoute,
        *,
        status: int,
        error: bool,
        failover: bool,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        text: str = "",
        shadow: bool = False,
        attempt: str | None = None,
    ) -> None:
        """Count one answer (or failed attempt: ``attempt`` prefixes its own row id)."""
        now = time.perf_counter()
        if shadow:  # a mirrored request: "shadow" on the candidate, "shadow-stable" on stable
            arm_name = "shadow" if ctx.arm == "candidate" else "shadow-stable"
        else:
            arm_name = "direct" if ctx.route.direct else ctx.arm
        if shadow:
            attempt = "sh-"
        row: dict[str, Any] = {
            "response_id": ctx.response_id if attempt is None else attempt + secrets.token_hex(12),
            "logical": ctx.route.logical,
            "arm": arm_name,
            "model": arm.model or arm.ref,
            "at": utcnow(),
            "status": status,
            "error": error,
            "failover": failover,
            "latency_ms": round((now - (ctx.started_arm or ctx.started)) * 1000, 3),
            "ttft_ms": None if ctx.ttft_ms is None else round(ctx.ttft_ms, 3),
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "replica": self.replica,
            "key_id": ctx.key_id,
        }
        self.metrics.observe(row)
        if attempt is None:
            ctx.finished = now
        assert self._log is not None
        self._log.add(ServeRequest, row)
        if attempt is None:
            self.recent[ctx.response_id] = (row["logical"], arm_name, row["model"], ctx.key_id)
            if len(self.recent) > 100_000:
                self.recent.popitem(last=False)
        if self.config.access_log:
            entry = {
                k: row[k]
                for k in (
                    "response_id",
                    "logical",
                    "arm",
                    "model",
                    "status",
                    "error",
                    "failover",
                    "latency_ms",
                    "ttft_ms",
                    "completion_tokens",
                    "key_id",
                )
            }
            if self.config.log_prompts:
                entry["messages"] = ctx.body.get("messages")
                entry["answer"] = text
            log.info(json.dumps(entry, default=str))

    async def _shadow(self, ctx: Call, served: ArmRoute, served_text: str) -> None:
        """Mirror one answered request to the other arm (a stable answer to the candidate, a
        candidate answer to the stable arm) and keep both answers as a shadow pair."""
        import aiohttp

        assert ctx.candidate is not None
        candidate = ctx.candidate
        other = candidate if ctx.arm == "stable" else ctx.route.stable
        mirrored = "candidate" if ctx.arm == "stable" else "stable"
        assert self._session is not None and self._log is not None
        self._shadow_inflight += 1
        started = time.perf_counter()
        answer: str | None = None
        error: str | None = None
        status = 503
        tokens = (0, 0)
        try:
            if not other.targets:
                raise Failed(f"no backend serves {other.model or other.ref}", 503)
            target = other.targets[self._rng.randrange(len(other.targets))]
            payload = dict(ctx.body, model=target.served_name, stream=False)
            payload.pop("stream_options", None)
            timeout = aiohttp.ClientTimeout(total=self.config.timeout_s)
            async with self._session.post(
                f"{target.url}/chat/completions", json=payload, timeout=timeout
            ) as resp:
                status = resp.status
                data = await resp.read()
            if status != 200:
                error = f"{mirrored} answered {status}"
            else:
                parsed = json.loads(data)
                answer = _answer_text(parsed)
                usage = parsed.get("usage") if isinstance(parsed, dict) else None
                if isinstance(usage, dict):
                    tokens = (
                        _count(usage.get("prompt_tokens")),
                        _count(usage.get("completion_tokens")),
                    )
        except (
            Failed,
            aiohttp.ClientError,
            TimeoutError,
            OSError,
            ValueError,
            RecursionError,
        ) as exc:
            error = f"{type(exc).__name__}: {exc}"[:1000]
        finally:
            self._shadow_inflight -= 1
        latency = (time.perf_counter() - started) * 1000
        shadow_ctx = Call(
            route=ctx.route,
            arm=mirrored,
            candidate=candidate,
            body=ctx.body,
            response_id=ctx.response_id,
            started=started,
            key_id=ctx.key_id,
        )
        self._record(
            shadow_ctx,
            other,
            status=status,
            error=error is not None,
            failover=False,
            shadow=True,
            prompt_tokens=tokens[0],
            completion_tokens=tokens[1],
        )
        served_ms: float | None = round(((ctx.finished or started) - ctx.started) * 1000, 3)
        other_ms = None if answer is None else round(latency, 3)
        if mirrored == "candidate":
            stable_answer, candidate_answer = served_text, answer
            stable_ms, candidate_ms = served_ms, other_ms
        elif answer is None:  # the stable arm failed its mirror: nothing to compare with
            return
        else:
            stable_answer, candidate_answer = answer, served_text
            stable_ms, candidate_ms = other_ms, served_ms
        self._log.add(
            ShadowPair,
            {
                "response_id": ctx.response_id,
                "logical": ctx.route.logical,
                "stable_model": ctx.route.stable.model or ctx.route.stable.ref,
                "candidate_model": candidate.model or candidate.ref,
                "messages": ctx.body.get("messages"),
                "stable_answer": stable_answer,
                "candidate_answer": candidate_answer,
                "candidate_error": error if mirrored == "candidate" else None,
                "stable_latency_ms": stable_ms,
                "candidate_latency_ms": candidate_ms,
                "served": ctx.arm,
                "at": utcnow(),
            },
        )
