"""The gateway: an OpenAI-compatible front door that routes each request for a logical model to
an arm (stable or candidate) and one of its backends, mirrors a share to the candidate (shadow),
fails over to stable, and counts everything per arm.

Endpoints: ``POST /v1/chat/completions`` (streaming and not), ``GET /v1/models``,
``POST /v1/feedback``, ``GET /healthz``, ``GET /metrics``. Every answer to a routed request
carries ``x-llmops-arm``, ``x-llmops-model-version`` and ``x-llmops-response-id``.

Stateless by design: policies, keys and the request log live in the registry database, so any
number of replicas behind any load balancer agree (rate limits are per replica). Retries happen
only before the first byte reaches the client.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import os
import random
import secrets
import socket
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops.db.models import ServeFeedback, ServeRequest
from llmops.db.timestamps import utcnow
from llmops.errors import InputError, ServingError
from llmops.serve.keys import RateBucket, key_digest
from llmops.serve.metrics import Metrics, RequestLog
from llmops.serve.proxy import Call, Proxy, error_response
from llmops.serve.snapshot import Key, Snapshot, build_snapshot
from llmops.serve.split import BUCKETS, bucket, choose

if TYPE_CHECKING:
    from aiohttp import web

    from llmops.registry import ModelRegistry
    from llmops.serve.controller import Controller
    from llmops.serve.serving import Serving

__all__ = ["Gateway", "GatewayConfig"]

log = logging.getLogger("llmops.gateway")


@dataclass(frozen=True, slots=True, kw_only=True)
class GatewayConfig:
    """How a gateway replica behaves."""

    host: str = "127.0.0.1"
    port: int = 8080
    refresh_s: float = 1.0
    """How often policies, backends and keys are re-read from the database."""
    timeout_s: float = 300.0
    """Longest a backend may take for one answer."""
    candidate_timeout_s: float = 30.0
    """A candidate that sends no byte within this long fails over to stable."""
    max_request_bytes: int = 1_048_576
    flush_s: float = 0.5
    """How often the request log is written to the database."""
    access_log: bool = False
    """One JSON line per request on the ``llmops.gateway`` logger."""
    log_prompts: bool = False
    """Include messages and answers in the access log (off: never contents)."""
    max_shadow_inflight: int = 64
    """Mirrored requests beyond this many at once are skipped (stable traffic never waits)."""
    canary_interval_s: float = 2.0
    """How often the canary controller evaluates the live canaries."""

    def __post_init__(self) -> None:
        for name in (
            "refresh_s",
            "timeout_s",
            "candidate_timeout_s",
            "flush_s",
            "canary_interval_s",
        ):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise InputError(
                    f"gateway {name} must be a positive number of seconds, got {value!r}"
                )
        if self.max_request_bytes < 1024:
            raise InputError(
                f"max_request_bytes {self.max_request_bytes} is below 1024",
                hint="a chat request needs at least a kilobyte",
            )
        if not 0 <= self.port <= 65535:
            raise InputError(f"port {self.port} is outside 0-65535")


class Gateway:
    """One gateway replica. ``run()`` serves in the foreground; ``start()``/``stop()`` (or
    ``with``) serve from a background thread, for notebooks and tests."""

    def __init__(
        self,
        models: ModelRegistry,
        config: GatewayConfig | None = None,
        *,
        serving: Serving | None = None,
    ) -> None:
        self.models = models
        self.config = config or GatewayConfig()
        self.serving = serving
        """With it, this replica also runs the canary controller (one leader per model)."""
        self.snapshot = Snapshot()
        self.metrics = Metrics()
        self.replica = f"gw-{socket.gethostname()[:32]}-{os.getpid()}-{secrets.token_hex(3)}"
        self._log: RequestLog | None = None
        self._proxy: Proxy | None = None
        self._buckets: dict[str, RateBucket] = {}
        self._rng = random.Random()  # noqa: S311 - traffic sampling, not secrets
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self.port = self.config.port

    @property
    def url(self) -> str:
        """``http://HOST:PORT/v1`` (the port is known once serving)."""
        return f"http://{self.config.host}:{self.port}/v1"

    # -- lifecycle -------------------------------------------------------------------------

    def refresh(self) -> Snapshot:
        """Re-read policies, backends and keys now (the refresher does this every interval)."""
        self.snapshot = build_snapshot(self.models)
        return self.snapshot

    def run(self) -> None:
        """Serve until interrupted (Ctrl-C or SIGTERM)."""
        asyncio.run(self._serve(announce=True))

    def start(self) -> Gateway:
        """Serve from a background thread; returns once the port is bound (a second call
        returns the running replica)."""
        if self._thread is not None and self._thread.is_alive():
            return self
        self._thread = threading.Thread(target=self._run_thread, name="llmops-gateway", daemon=True)
        self._thread.start()
        self._ready.wait(60)
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Stop serving and flush the request log."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(30)

    def __enter__(self) -> Gateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _run_thread(self) -> None:
        try:
            asyncio.run(self._serve(announce=False))
        except BaseException as exc:
            self._error = exc
            self._ready.set()

    def app(self) -> web.Application:
        """The aiohttp application (routes only; :meth:`run` adds the lifecycle)."""
        from aiohttp import web

        app = web.Application(client_max_size=self.config.max_request_bytes)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._list_models)
        app.router.add_post("/v1/feedback", self._feedback)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/canary/{logical}/analysis", self._canary_analysis)
        app.router.add_get("/canary/{logical}/check", self._canary_check, allow_head=False)
        app.router.add_post("/canary/{logical}/check", self._canary_check)
        return app

    async def _serve(self, *, announce: bool) -> None:
        import aiohttp
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.snapshot = await asyncio.to_thread(build_snapshot, self.models)
        self._log = RequestLog(self.models.db, flush_s=self.config.flush_s)
        session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0, ttl_dns_cache=300),
            auto_decompress=False,
        )
        self._proxy = Proxy(
            self.config, session=session, metrics=self.metrics, log=self._log, replica=self.replica
        )
        runner = web.AppRunner(self.app(), access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, self.config.host, self.config.port)
        try:
            await site.start()
        except OSError as exc:
            await runner.cleanup()
            await session.close()
            self._log.close()
            where = f"{self.config.host}:{self.config.port}"
            raise ServingError(
                f"the gateway cannot listen on {where}: {exc.strerror}",
                hint="choose another --port, or stop what listens there",
            ) from None
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        refresher = asyncio.create_task(self._refresher())
        controller = asyncio.create_task(self._controller())
        if announce:
            import signal

            for sig in (signal.SIGINT, signal.SIGTERM):
                self._loop.add_signal_handler(sig, self._stop.set)
            print(
                f"llmops gateway on http://{self.config.host}:{self.port}/v1"
                f" ({len(self.snapshot.routes)} routes)",
                flush=True,
            )
        self._ready.set()
        try:
            await self._stop.wait()
        finally:
            refresher.cancel()
            controller.cancel()
            await asyncio.gather(controller, return_exceptions=True)  # judging stops with it
            for task in list(self._proxy.tasks):
                task.cancel()
            await runner.cleanup()
            await session.close()
            await asyncio.to_thread(self._log.close)

    async def _controller(self) -> None:
        if self.serving is None:
            return
        from llmops.serve.controller import Controller

        controller = Controller(
            self.serving, replica=self.replica, interval_s=self.config.canary_interval_s
        )
        # Judging runs in a daemon thread of its own: a slow judge never delays a decision,
        # and a judge call in flight never holds the gateway up when it stops.
        stop = threading.Event()
        judge = threading.Thread(target=self._judging, args=(controller, stop), daemon=True,
                                 name="llmops-canary-judge")  # fmt: skip
        judge.start()
        try:
            while True:
                await asyncio.sleep(self.config.canary_interval_s)
                try:
                    await asyncio.to_thread(controller.tick)
                except Exception as exc:  # the next tick tries again
                    log.error("gateway: canary controller failed: %s", exc)
        finally:
            stop.set()  # a judge call in flight gets a few seconds to finish, never more
            await asyncio.to_thread(judge.join, 5)

    @staticmethod
    def _judging(controller: Controller, stop: threading.Event) -> None:
        """Judge the led canaries' shadow pairs until ``stop`` (back to back while there are
        pairs to judge)."""
        while not stop.is_set():
            try:
                judged = controller.judge()
            except Exception as exc:  # the next pass tries again
                log.error("gateway: canary judging failed: %s", exc)
                judged = {}
            if not any(n > 0 for n in judged.values()):
                stop.wait(controller.interval_s)

    async def _canary_analysis(self, request: web.Request) -> web.Response:
        from llmops.serve.canary_api import analysis

        return await analysis(self, request)

    async def _canary_check(self, request: web.Request) -> web.Response:
        from llmops.serve.canary_api import check

        return await check(self, request)

    async def _refresher(self) -> None:
        while True:
            await asyncio.sleep(self.config.refresh_s)
            try:
                self.snapshot = await asyncio.to_thread(build_snapshot, self.models)
            except Exception as exc:  # keep serving from the last good snapshot
                log.error("gateway: refresh failed, keeping the last snapshot: %s", exc)

    @property
    def proxy(self) -> Proxy:
        """The forwarding half (exists while serving)."""
        if self._proxy is None:
            raise RuntimeError("the gateway is not serving")
        return self._proxy

    # -- auth, limits ----------------------------------------------------------------------

    def _auth(
        self, request: web.Request, logical: str | None, *, limit: bool = True
    ) -> tuple[Key | None, Any]:
        snapshot = self.snapshot
        if not snapshot.auth_required:
            return None, None
        header = request.headers.get("Authorization", "")
        scheme, _, secret = header.partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            self.metrics.rejected["auth"] += 1
            return None, error_response(
                401,
                "missing API key: send Authorization: Bearer <key>",
                "invalid_request_error",
                code="invalid_api_key",
            )
        key = snapshot.keys.get(key_digest(secret.strip()))
        if key is None:
            self.metrics.rejected["auth"] += 1
            return None, error_response(
                401, "invalid API key", "invalid_request_error", code="invalid_api_key"
            )
        if logical is not None and key.models and logical not in key.models:
            self.metrics.rejected["scope"] += 1
            return None, error_response(
                403,
                f"this API key may not call model {logical!r}",
                "permission_error",
                code="model_not_allowed",
            )
        if limit and key.rate_per_minute:
            bucket = self._buckets.get(key.id)
            if bucket is None or bucket.capacity != key.rate_per_minute:
                bucket = self._buckets[key.id] = RateBucket(key.rate_per_minute)
            wait = bucket.take()
            if wait:
                self.metrics.rejected["rate_limit"] += 1
                return None, error_response(
                    429,
                    f"rate limit of {key.rate_per_minute} requests per minute reached",
                    "rate_limit_error",
                    code="rate_limit_exceeded",
                    headers={"Retry-After": str(max(1, math.ceil(wait)))},
                )
        return key, None

    # -- handlers --------------------------------------------------------------------------

    async def _healthz(self, request: web.Request) -> web.Response:
        from aiohttp import web

        age = time.monotonic() - self.snapshot.built_at
        stale = age > max(30.0, 10 * self.config.refresh_s)
        return web.json_response(
            {
                "ok": not stale,
                "replica": self.replica,
                "snapshot_age_s": round(age, 3),
                "routes": len(self.snapshot.routes),
            },
            status=503 if stale else 200,
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        from aiohttp import web

        return web.Response(
            text=self.metrics.render(),
            content_type="text/plain",
            headers={"X-Prometheus-Format": "0.0.4"},
        )

    async def _list_models(self, request: web.Request) -> web.Response:
        from aiohttp import web

        key, refused = self._auth(request, None, limit=False)
        if refused is not None:
            return refused  # type: ignore[no-any-return]
        data = [
            {
                "id": name,
                "object": "model",
                "owned_by": "llmops",
                "llmops": {
                    "direct": route.direct,
                    "stable": route.stable.model,
                    "candidate": route.candidate.model if route.candidate else None,
                },
            }
            for name, route in sorted(self.snapshot.routes.items())
            if key is None or not key.models or name in key.models
        ]
        return web.json_response({"object": "list", "data": data})

    @staticmethod
    async def _read_feedback(request: web.Request) -> tuple[str, float, str] | web.Response:
        """(response id, score, comment) of a feedback request, or the 400 answer."""
        from aiohttp import web

        try:
            body = await request.json()
        except web.HTTPRequestEntityTooLarge:
            return error_response(
                413, "feedback body too large", "invalid_request_error", code="request_too_large"
            )
        except Exception:
            return error_response(400, "the body is not JSON", "invalid_request_error")
        if not isinstance(body, dict) or not isinstance(body.get("response_id"), str):
            return error_response(
                400,
                "feedback needs response_id (from the x-llmops-response-id"
                " header) and score (0-1) or thumbs (up/down)",
                "invalid_request_error",
            )
        score = body.get("score")
        thumbs = body.get("thumbs")
        if thumbs in ("up", "down") and score is None:
            score = 1.0 if thumbs == "up" else 0.0
        if isinstance(score, bool) or not isinstance(score, int | float) or not 0 <= score <= 1:
            return error_response(
                400,
                "score must be a number from 0 to 1 (or thumbs: up/down)",
                "invalid_request_error",
                code="invalid_score",
            )
        comment = body.get("comment")
        return body["response_id"][:40], float(score), str(comment)[:10_000] if comment else ""

    async def _feedback(self, request: web.Request) -> web.Response:
        from aiohttp import web

        read = await self._read_feedback(request)
        if not isinstance(read, tuple):
            return read
        response_id, score, comment = read
        key, refused = self._auth(request, None, limit=False)  # who asks, before any lookup
        if refused is not None:
            return refused  # type: ignore[no-any-return]
        origin = None
        if response_id.startswith("gw-"):  # only answers a client got (not internal attempts)
            origin = self.proxy.recent.get(response_id) or await asyncio.to_thread(
                self._lookup, response_id
            )
            if origin is None:  # another replica's answer reaches the database within a flush
                await asyncio.sleep(2 * self.config.flush_s + 0.1)
                origin = await asyncio.to_thread(self._lookup, response_id)
        if origin is None:
            return error_response(
                404,
                f"no response {response_id!r} from this gateway (send the answer's"
                " x-llmops-response-id header, not the body's id)",
                "invalid_request_error",
                code="response_not_found",
            )
        if key is not None and (
            (key.models and origin[0] not in key.models) or origin[3] not in (None, key.id)
        ):
            return error_response(
                403,
                "feedback must come with the API key that made the request",
                "permission_error",
                code="not_your_response",
            )
        logical, arm, model, _ = origin
        assert self._log is not None
        self._log.add(
            ServeFeedback,
            {
                "response_id": response_id,
                "logical": logical,
                "arm": arm,
                "model": model,
                "score": score,
                "comment": comment,
                "key_id": key.id if key else None,
                "at": utcnow(),
            },
        )
        return web.json_response({"ok": True, "response_id": response_id, "arm": arm})

    def _lookup(self, response_id: str) -> tuple[str, str, str, str | None] | None:
        from sqlalchemy import select
        from sqlmodel import col

        assert self._log is not None
        self._log.flush()
        with self.models.db.read() as session:
            row = session.execute(
                select(
                    col(ServeRequest.logical),
                    col(ServeRequest.arm),
                    col(ServeRequest.model),
                    col(ServeRequest.key_id),
                ).where(col(ServeRequest.response_id) == response_id)
            ).first()
        return None if row is None else (row[0], row[1], row[2], row[3])

    async def _parse(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The request's body, or the error answer (413, 400) for one the gateway refuses."""
        from aiohttp import web

        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            self.metrics.rejected["too_large"] += 1
            return error_response(
                413,
                f"request body over {self.config.max_request_bytes} bytes",
                "invalid_request_error",
                code="request_too_large",
            )
        try:
            body = json.loads(raw, parse_constant=_no_constants)
        except (ValueError, UnicodeDecodeError, RecursionError):
            body = None
        if not isinstance(body, dict):
            self.metrics.rejected["malformed"] += 1
            return error_response(400, "the body is not a JSON object", "invalid_request_error")
        messages = body.get("messages")
        if (
            not isinstance(body.get("model"), str)
            or not isinstance(messages, list)
            or not messages
            or not all(isinstance(m, dict) and isinstance(m.get("role"), str) for m in messages)
        ):
            self.metrics.rejected["malformed"] += 1
            return error_response(
                400,
                "a chat completion needs model (a string) and messages (a non-empty list of"
                " objects with a role)",
                "invalid_request_error",
            )
        return body

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        started = time.perf_counter()
        body = await self._parse(request)
        if not isinstance(body, dict):
            return body
        logical = body["model"]
        route = self.snapshot.routes.get(logical)
        key, refused = self._auth(request, logical if route else None)
        if refused is not None:
            return refused  # type: ignore[no-any-return]
        if route is None:
            self.metrics.rejected["unknown_model"] += 1
            return error_response(
                404,
                f"the model {logical!r} does not exist",
                "invalid_request_error",
                code="model_not_found",
            )
        arm_name, candidate = "stable", route.candidate
        if route.candidate is not None and not route.killed:
            sticky = route.sticky.key(request.headers, body) if route.sticky else None
            if route.cohorts and route.in_cohort(request.headers):
                arm_name = "cohort"  # a segment sent to the candidate: its own numbers
            elif route.weight > 0:
                arm_name = choose(route.logical, route.weight, sticky, rng=self._rng)
            if route.candidates:  # a bandit: which candidate, by its shares (sticky too)
                draw = (
                    bucket(f"{route.logical}\x00bandit", sticky) / BUCKETS
                    if sticky is not None
                    else self._rng.random()
                )
                candidate = route.pick(draw)
        response_id = "gw-" + secrets.token_hex(12)
        ctx = Call(
            route=route,
            arm=arm_name,
            candidate=candidate,
            body=body,
            response_id=response_id,
            started=started,
            key_id=key.id if key else None,
        )
        return await self.proxy.handle(request, ctx)


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")
