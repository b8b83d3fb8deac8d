"""An offline OpenAI-compatible server for tests, demos and benchmarks (loopback only).

It answers ``POST /v1/chat/completions`` (and ``GET /v1/models``) with scripted text (streamed
as server-sent events when asked), after a configurable latency, and injects faults on demand:
HTTP 404, 429 and 500, timeouts, malformed JSON and dropped connections. Every request is recorded.
Use it from Python::

    with MockServer(latency_s=0.05, respond=lambda body: "Paris") as server:
        suite_model = {"provider": "openai", "name": "mock", "api_base": server.url}

or as a process: ``python -m llmops.evals.testing --port 8011 --latency 0.05``.

A responder gets the request body and returns the reply text (or a :class:`Fault`). Without one,
the server replies ``echo: <last user message>``; a judge request (one whose system message asks
for a verdict) gets a JSON verdict that passes when the candidate contains the reference answer.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

__all__ = ["Fault", "MockServer", "Responder", "default_responder", "record_run"]

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from llmops.evals.records import EvalRunRecord
    from llmops.evals.results import EvalRuns

FaultKind = Literal["404", "429", "500", "timeout", "malformed", "disconnect"]


@dataclass(frozen=True, slots=True)
class Fault:
    """A failure to inject instead of a reply."""

    kind: FaultKind
    retry_after_s: float | None = None
    """For ``429``: the ``Retry-After`` header to send."""


Responder = Callable[[dict[str, Any]], "str | Fault"]


def _last_user(body: dict[str, Any]) -> str:
    for message in reversed(body.get("messages", [])):
        if message.get("role") == "user":
            return str(message.get("content", ""))
    return ""


def default_responder(body: dict[str, Any]) -> str | Fault:
    """``echo: <last user message>``."""
    return f"echo: {_last_user(body)}"


@dataclass
class _State:
    respond: Responder
    latency_s: float
    faults: list[FaultKind | None]
    fault_every: int
    fault_kind: FaultKind
    requests: list[dict[str, Any]] = field(default_factory=list)
    count: int = 0
    chunk_delay_s: float = 0.0
    logprobs: bool = True
    cancelled: int = 0
    """Streams the client went away from before the end."""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def next_fault(self, index: int) -> Fault | None:
        if index < len(self.faults) and self.faults[index] is not None:
            return Fault(self.faults[index])  # type: ignore[arg-type]
        if self.fault_every and (index + 1) % self.fault_every == 0:
            return Fault(self.fault_kind)
        return None


def _tokens(text: str) -> int:
    return max(1, len(text.split()))


def _completion(body: dict[str, Any], text: str, *, logprobs: bool = True) -> dict[str, Any]:
    prompt = " ".join(str(m.get("content", "")) for m in body.get("messages", []))
    choice: dict[str, Any] = {
        "index": 0,
        "message": {"role": "assistant", "content": text},
        "finish_reason": "stop",
    }
    if logprobs and body.get("logprobs"):  # the reply's first word is the one likely token
        first = (text.split() or [""])[0]
        top = {"token": first, "logprob": math.log(0.9)}
        choice["logprobs"] = {"content": [{**top, "top_logprobs": [top]}]}
    return {
        "id": f"chatcmpl-mock-{time.monotonic_ns()}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": body.get("model", "mock"),
        "choices": [choice],
        "usage": {
            "prompt_tokens": _tokens(prompt),
            "completion_tokens": _tokens(text),
            "total_tokens": _tokens(prompt) + _tokens(text),
        },
    }


class MockServer:
    """The server, running on 127.0.0.1 in a background thread.

    Args:
        respond: Reply text (or a :class:`Fault`) for a request body.
        latency_s: Delay before every reply.
        faults: Per request number (0-based, in arrival order): a fault kind or None.
        fault_every: Also inject ``fault_kind`` on every n-th request (0: never).
        fault_kind: The fault ``fault_every`` injects.
        chunk_delay_s: Streaming (``"stream": true``): delay before each word's chunk.
        logprobs: A request asking for ``logprobs`` gets the reply's first word as its one
            likely first token (probability 0.9); False: none, as a server without them.
        port: 0 picks a free port.
    """

    def __init__(
        self,
        respond: Responder | None = None,
        *,
        latency_s: float = 0.0,
        faults: list[FaultKind | None] | None = None,
        fault_every: int = 0,
        fault_kind: FaultKind = "500",
        chunk_delay_s: float = 0.0,
        logprobs: bool = True,
        port: int = 0,
    ) -> None:
        self.state = _State(
            respond=respond or default_responder,
            latency_s=latency_s,
            faults=list(faults or []),
            fault_every=fault_every,
            fault_kind=fault_kind,
            chunk_delay_s=chunk_delay_s,
            logprobs=logprobs,
        )
        self._port = port
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self.port = 0

    @property
    def url(self) -> str:
        """Base URL for an OpenAI client: ``http://127.0.0.1:PORT/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        """Every request body received, in order."""
        with self.state.lock:
            return list(self.state.requests)

    def __enter__(self) -> MockServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        """Start serving (returns once the port is bound)."""
        self._thread = threading.Thread(target=self._run, name="llmops-mock-server", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError("mock server did not start")

    def stop(self) -> None:
        """Stop serving."""
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        asyncio.run(self._serve())

    async def _serve(self) -> None:
        from aiohttp import web

        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        app = web.Application(client_max_size=64 * 1024**2)
        app.router.add_post("/v1/chat/completions", self._chat)
        app.router.add_get("/v1/models", self._models)
        runner = web.AppRunner(app, access_log=None, handler_cancellation=True)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", self._port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._ready.set()
        await self._stop.wait()
        await runner.cleanup()

    async def _models(self, request: Any) -> Any:
        from aiohttp import web

        return web.json_response({"object": "list", "data": [{"id": "mock", "object": "model"}]})

    async def _chat(self, request: Any) -> Any:
        from aiohttp import web

        state = self.state
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return web.json_response({"error": {"message": "invalid JSON body"}}, status=400)
        with state.lock:
            index = state.count
            state.count += 1
            state.requests.append(body)
        if state.latency_s:
            await asyncio.sleep(state.latency_s)
        reply = state.next_fault(index) or state.respond(body)
        if isinstance(reply, Fault):
            return await self._fault(request, reply, body)
        if body.get("stream") is True:
            return await self._stream(request, body, reply)
        return web.json_response(_completion(body, reply, logprobs=state.logprobs))

    async def _stream(self, request: Any, body: dict[str, Any], text: str) -> Any:
        """Server-sent events as OpenAI streams them: a role chunk, one chunk per word (after
        ``chunk_delay_s`` each), a finish chunk, usage when asked, ``[DONE]``."""
        from aiohttp import web

        cid = f"chatcmpl-mock-{time.monotonic_ns()}"
        model = body.get("model", "mock")

        def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            chunk = {"id": cid, "object": "chat.completion.chunk", "created": int(time.time()),
                     "model": model, "choices": [choice]}  # fmt: skip
            return f"data: {json.dumps(chunk)}\n\n".encode()

        out = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await out.prepare(request)
        try:
            await out.write(event({"role": "assistant", "content": ""}))
            words = text.split(" ")
            for i, word in enumerate(words):
                if self.state.chunk_delay_s:
                    await asyncio.sleep(self.state.chunk_delay_s)
                await out.write(event({"content": word if i == 0 else f" {word}"}))
            await out.write(event({}, "stop"))
            options = body.get("stream_options")
            if isinstance(options, dict) and options.get("include_usage"):
                usage = _completion(body, text)["usage"]
                data = {"id": cid, "object": "chat.completion.chunk", "model": model,
                        "choices": [], "usage": usage}  # fmt: skip
                await out.write(f"data: {json.dumps(data)}\n\n".encode())
            await out.write(b"data: [DONE]\n\n")
            await out.write_eof()
        except (ConnectionResetError, asyncio.CancelledError):
            with self.state.lock:
                self.state.cancelled += 1
            raise
        return out

    async def _fault(self, request: Any, fault: Fault, body: dict[str, Any]) -> Any:
        from aiohttp import web

        if fault.kind == "429":
            headers = {"Retry-After": str(fault.retry_after_s)} if fault.retry_after_s else None
            return web.json_response(
                {"error": {"message": "rate limited", "type": "rate_limit"}},
                status=429,
                headers=headers,
            )
        if fault.kind == "404":
            message = f"The model `{body.get('model')}` does not exist."
            return web.json_response(
                {"error": {"message": message, "type": "NotFoundError", "code": 404}}, status=404
            )
        if fault.kind == "500":
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        if fault.kind == "timeout":
            await asyncio.sleep(3600)
        if fault.kind == "malformed":
            return web.Response(text='{"choices": [{"message": ', content_type="application/json")
        transport = request.transport
        if transport is not None:
            transport.abort()  # disconnect: drop the connection without a reply
        return web.Response(status=500)


def main(argv: list[str] | None = None) -> None:
    """``python -m llmops.evals.testing``: serve until interrupted."""
    parser = argparse.ArgumentParser(description="Offline OpenAI-compatible server (loopback).")
    parser.add_argument("--port", type=int, default=8011)
    parser.add_argument("--latency", type=float, default=0.0, help="Seconds before each reply.")
    parser.add_argument(
        "--judge-pass",
        action="store_true",
        help="Answer judge requests with a passing JSON verdict.",
    )
    args = parser.parse_args(argv)

    def respond(body: dict[str, Any]) -> str | Fault:
        system = " ".join(
            str(m.get("content", "")) for m in body.get("messages", []) if m.get("role") == "system"
        )
        if "verdict" in system.lower():
            verdict = 'true, "score": 1' if args.judge_pass else 'false, "score": 0'
            return f'{{"reason": "scripted", "pass": {verdict}}}'
        return default_responder(body)

    server = MockServer(respond, latency_s=args.latency, port=args.port)
    server.start()
    print(f"serving {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        server.stop()


if __name__ == "__main__":
    main()


def record_run(
    runs: EvalRuns,
    results: Sequence[Mapping[str, Any]],
    *,
    targets: Sequence[str] = ("model",),
    pairs: Sequence[Mapping[str, Any]] = (),
    suite_name: str = "synthetic",
    suite_digest: str = "sha256:synthetic",
) -> EvalRunRecord:
    """Store a completed eval run made of given results, calling no model: for tests,
    benchmarks and demos of what reads runs (comparisons, the dashboard, reviews).

    Each result needs ``case_index`` and ``target`` and may give ``case_id``, ``vars``,
    ``metadata``, ``output``, ``passed``, ``score``, ``assertions``, ``latency_ms``, ``cost``
    and ``human``;
    each pair ``case_index`` and ``verdict`` (``A``, ``B``, ``TIE``), ``consistent``, ``human``.
    """
    from llmops.evals.results import new_eval_id

    run_id = new_eval_id()
    runs._create(
        id=run_id, suite_name=suite_name, suite_path="", suite_digest=suite_digest,
        suite={"description": "recorded by llmops.evals.testing.record_run"},
        targets=list(targets), cases=len({r["case_index"] for r in results}),
        environment={"models": {}, "options": {}},
    )  # fmt: skip
    defaults: dict[str, Any] = {
        "case_id": None, "vars": {}, "output": "", "passed": True, "score": 1.0, "error": None,
        "assertions": [], "prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0,
        "latency_ms": 0.0, "cached": False, "human": None,
    }  # fmt: skip
    rows = [
        {"kind": "result", "run_id": run_id, **defaults,
         **{k: v for k, v in r.items() if k != "metadata"},
         "case_metadata": r.get("metadata") or None}
        for r in results
    ]  # fmt: skip
    rows += [
        {"kind": "pair", "run_id": run_id, "consistent": True, "details": {}, "human": None, **p}
        for p in pairs
    ]
    for start in range(0, len(rows), 5000):
        runs._add_results(rows[start : start + 5000])
    summary = runs.summarize(run_id, list(targets))
    errors = sum(t.errors for t in summary.targets)
    return runs._finish(
        run_id, status="completed", summary=summary, cases=len(results), errors=errors
    )
