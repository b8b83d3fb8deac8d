"""The gateway's canary endpoints, for rollout tools that run elsewhere:

- ``GET /canary/LOGICAL/analysis``: the canary's status as JSON (state, step, weight, per-arm
  numbers, the analysis with each test's interval and ``breach``, and the decisions), for Argo
  Rollouts' ``web`` metrics (see :func:`llmops.serve.export.argo_analysis`).
- ``GET|POST /canary/LOGICAL/check``: a pass/fail check in the shape of a Flagger webhook:
  200 while the canary holds up (running, paused, waiting for an approval, or promoted), 412
  once it breaches a threshold or is rolled back, with a one-line reason either way.
"""

from __future__ import annotations

import asyncio
import json
from typing import TYPE_CHECKING, Any

from llmops.errors import NotFoundError
from llmops.serve.canary import CanaryStatus
from llmops.serve.proxy import error_response

if TYPE_CHECKING:
    from aiohttp import web

    from llmops.serve.gateway import Gateway

__all__ = ["analysis", "check"]


async def _status(gw: Gateway, request: web.Request) -> CanaryStatus | web.Response:
    logical = request.match_info["logical"]
    _, refused = gw._auth(request, logical, limit=False)
    if refused is not None:
        return refused  # type: ignore[no-any-return]
    if gw.serving is None:
        return error_response(404, "this gateway runs no canaries", "invalid_request_error")
    try:
        return await asyncio.to_thread(gw.serving.canaries.status, logical)
    except NotFoundError as exc:
        return error_response(404, exc.one_line(), "invalid_request_error", code="canary_not_found")


def _json(status: int, body: dict[str, Any]) -> web.Response:
    from aiohttp import web

    return web.Response(
        status=status, text=json.dumps(body, default=str), content_type="application/json"
    )


async def analysis(gw: Gateway, request: web.Request) -> web.Response:
    """``GET /canary/LOGICAL/analysis``: the canary's status as JSON."""
    status = await _status(gw, request)
    if not isinstance(status, CanaryStatus):
        return status
    return _json(200, status.to_json())


async def check(gw: Gateway, request: web.Request) -> web.Response:
    """``/canary/LOGICAL/check``: 200 while the canary holds up, 412 on a breach or rollback."""
    status = await _status(gw, request)
    if not isinstance(status, CanaryStatus):
        return status
    breach = status.analysis.get("breach_reason")
    failed = status.state == "rolled_back" or bool(breach)
    reason = (status.reason if status.state == "rolled_back" else breach) or (
        status.last.reason if status.last else status.state
    )
    body = {"ok": not failed, "state": status.state, "step": status.step,
            "weight": status.weight, "reason": reason}  # fmt: skip
    return _json(412 if failed else 200, body)
