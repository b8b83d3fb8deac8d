"""Serving: backends (vLLM over HTTP, the local transformers server, attached servers), the
OpenAI-compatible gateway, traffic policies with sticky splits, shadow mirroring and a kill
switch, per-arm metrics, canaries (a controller that steps a candidate up on live traffic, with
sequential statistics, and rolls it back or promotes it), and exports to llm-d, KServe and Argo
Rollouts.

Reach it as ``ws.serving``; aiohttp (the ``serve`` extra) loads only when a server runs.
"""

from llmops.serve.backends import Backends
from llmops.serve.canary import Canaries, CanarySpec, CanaryStatus, Decision
from llmops.serve.gateway import Gateway, GatewayConfig
from llmops.serve.keys import ApiKeys
from llmops.serve.records import ApiKey, ArmStats, Backend, CreatedKey, TrafficPolicy, TrafficStatus
from llmops.serve.serving import Serving
from llmops.serve.split import bucket, choose, parse_sticky
from llmops.serve.traffic import Traffic

__all__ = [
    "ApiKey",
    "ApiKeys",
    "ArmStats",
    "Backend",
    "Backends",
    "Canaries",
    "CanarySpec",
    "CanaryStatus",
    "CreatedKey",
    "Decision",
    "Gateway",
    "GatewayConfig",
    "Serving",
    "Traffic",
    "TrafficPolicy",
    "TrafficStatus",
    "bucket",
    "choose",
    "parse_sticky",
]
