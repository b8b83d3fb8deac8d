"""The serving step kinds: ``serve`` starts a backend for a base model and its adapters (left
running for what follows), ``canary`` rolls a candidate out on a logical model behind the
gateway with synthetic traffic until the controller promotes it or rolls it back.

A cached ``serve`` step is reused only while its server still answers; otherwise it runs
again. A ``canary`` step's key is its arms and spec: the same rollout is not repeated.
"""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from llmops.pipelines.steps import Kind, StepContext, StepFailed, _Params

__all__ = ["SERVING_KINDS"]

TERMINAL = ("promoted", "rolled_back", "awaiting_approval")
_SERVERS: list[Any] = []
"""Servers a serve step started in this process: they outlive the step (``llmops serve stop``
ends them), so their process handles are kept."""


class ServeParams(_Params):
    base: str
    adapters: list[str] = Field(default_factory=list)
    backend: str = Field(default="local", pattern="^(local|vllm)$")
    port: int | None = Field(default=None, ge=1, le=65535)
    """Default: a free port on this machine."""
    timeout_s: float = Field(default=600.0, gt=0)


def _serve_fingerprint(ctx: StepContext, p: ServeParams) -> dict[str, Any]:
    refs = [p.base, *p.adapters]
    return {"versions": {r: ctx.ws.artifacts.get(r).digest for r in refs}}


def _serve_run(ctx: StepContext, p: ServeParams) -> dict[str, Any]:
    port = p.port or _free_port()
    launched, proc = ctx.ws.serving.start(p.base, p.adapters, kind=p.backend, port=port,
                                          timeout_s=p.timeout_s)  # fmt: skip
    _SERVERS.append(proc)
    ctx.log(f"{p.backend} backend ready on {launched.url} in {launched.seconds:.0f} s "
            f"(pid {launched.pid}; `llmops serve stop --all` stops it)")  # fmt: skip
    served = {b.ref: b.served_name for b in launched.backends}
    return {"url": launched.url, "pid": launched.pid, "served": served}


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_alive(ctx: StepContext, outputs: dict[str, Any]) -> bool:
    import httpx

    try:
        return httpx.get(f"{outputs.get('url')}/models", timeout=3).status_code == 200
    except httpx.HTTPError:
        return False


class TrafficParams(_Params):
    requests: int = Field(default=120, ge=1, le=100_000)
    """At most this many synthetic requests (one new user each)."""
    batch: int = Field(default=4, ge=1, le=1000)
    pause_s: float = Field(default=1.5, ge=0)
    """After each batch: the request log lands and the controller looks."""
    prompt: str = "Say hello to user {user}."
    max_tokens: int = Field(default=8, ge=1)


class CanaryParams(_Params):
    logical: str
    stable: str
    candidate: str
    spec: dict[str, Any] = Field(default_factory=dict)
    """The canary spec (``steps``, ``min_requests`` ...), as ``canary.yaml``."""
    sticky: str = "header:x-user-id"
    traffic: TrafficParams = Field(default_factory=TrafficParams)
    require_promotion: bool = False
    """Fail the step unless the candidate was promoted."""


def _canary_fingerprint(ctx: StepContext, p: CanaryParams) -> dict[str, Any]:
    return {"stable": ctx.ws.artifacts.get(p.stable).digest,
            "candidate": ctx.ws.artifacts.get(p.candidate).digest}  # fmt: skip


def _canary_run(ctx: StepContext, p: CanaryParams) -> dict[str, Any]:
    import httpx

    serving = ctx.ws.serving
    serving.traffic.set(p.logical, stable=p.stable, candidate=None, sticky=p.sticky)
    serving.canaries.start(p.logical, candidate=p.candidate, **p.spec)
    ctx.log(f"{p.candidate} against {p.stable} on {p.logical}")
    sent, state = 0, "running"
    gateway = serving.gateway(port=0, refresh_s=0.2, flush_s=0.5, canary_interval_s=1.0).start()
    try:
        with httpx.Client(timeout=300) as client:
            while state not in TERMINAL and sent < p.traffic.requests:
                for _ in range(min(p.traffic.batch, p.traffic.requests - sent)):
                    client.post(f"{gateway.url}/chat/completions",
                                headers={"x-user-id": f"user-{sent}"},
                                json={"model": p.logical, "max_tokens": p.traffic.max_tokens,
                                      "temperature": 0, "messages": [{"role": "user",
                                      "content": p.traffic.prompt.format(user=sent)}]})  # fmt: skip
                    sent += 1
                time.sleep(p.traffic.pause_s)
                status = serving.canaries.status(p.logical)
                state = status.state
                where = (f"step {status.step + 1}, weight {status.weight:g}%" if state == "running"
                         else status.reason or state)  # fmt: skip
                ctx.log(f"after {sent} requests: {state} ({where})")
    finally:
        gateway.stop()
    status = serving.canaries.status(p.logical)
    if status.state == "running":  # out of traffic before a decision: end it, say why
        status = serving.canaries.rollback(p.logical, reason=f"no decision after {sent} requests")
    last = status.decisions[-1] if status.decisions else None
    reason = last.reason if last else status.reason
    quality = status.analysis.get("quality") or {}
    judged = {k: quality[k] for k in ("judged", "wins", "ties", "losses") if k in quality}
    if judged:
        consistency = quality.get("position_consistency")
        shown = "n/a" if consistency is None else f"{consistency:.2f}"
        weak = consistency is None or consistency < 0.5
        ctx.log(f"judged {judged['judged']} mirrored pairs: candidate won {judged['wins']},"
                f" tied {judged['ties']}, lost {judged['losses']}; position consistency {shown}"
                + (" -- the judge mostly picks by position: its verdicts say little"
                   if weak else ""))  # fmt: skip
    ctx.log(f"{p.candidate}: {status.state} ({reason})")
    if p.require_promotion and status.state != "promoted":
        raise StepFailed(f"the canary of {p.candidate} ended {status.state}: {reason}",
                         hint=f"llmops canary status {p.logical}")  # fmt: skip
    return {"state": status.state, "requests": sent, "reason": reason,
            "decisions": [d.action for d in status.decisions],
            **({"judged": judged} if judged else {})}  # fmt: skip


SERVING_KINDS: dict[str, Kind] = {
    "serve": Kind(ServeParams, _serve_fingerprint, _serve_run, valid=_serve_alive),
    "canary": Kind(CanaryParams, _canary_fingerprint, _canary_run),
}
