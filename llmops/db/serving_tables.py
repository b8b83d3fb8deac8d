"""Registry tables of serving and canaries (re-exported by :mod:`llmops.db.models`):
``serve_backend``, ``traffic_policy``, ``gateway_key``, ``serve_request``, ``serve_feedback``,
``serve_rollup``, ``serve_latency_bucket``, ``shadow_pair``, ``canary``, ``canary_decision``
and ``serve_lease``."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Index, UniqueConstraint
from sqlmodel import Field, SQLModel

from llmops.db.timestamps import utcnow

__all__ = [
    "CanaryDecisionRow",
    "CanaryRow",
    "GatewayKey",
    "ServeBackend",
    "ServeFeedback",
    "ServeLatencyBucket",
    "ServeLease",
    "ServeRequest",
    "ServeRollup",
    "ShadowPair",
    "TrafficPolicyRow",
]


def _ts() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ServeBackend(SQLModel, table=True):
    """An OpenAI-compatible server that serves one model version under a served name."""

    __tablename__ = "serve_backend"
    __table_args__ = (UniqueConstraint("url", "served_name", name="uq_serve_backend_target"),)

    id: str = Field(primary_key=True, max_length=40)
    model: str = Field(max_length=128, index=True)
    version: int
    digest: str = Field(max_length=80)
    served_name: str = Field(max_length=256)
    """The ``model`` field the backend expects (an adapter's is ``<name>-<digest12>``)."""
    url: str = Field(max_length=1000)
    """Base URL ending in ``/v1``."""
    kind: str = Field(max_length=16)
    """``local``, ``vllm`` or ``external`` (attached, run by someone else)."""
    base: str | None = Field(default=None, max_length=300)
    """The base model version an adapter is served on (``name@3``)."""
    pid: int | None = Field(default=None)
    status: str = Field(default="up", max_length=16)
    """``up`` or ``down`` (its server stopped; kept for the history)."""
    created_by: str = Field(max_length=256)
    created_at: datetime = _ts()


class TrafficPolicyRow(SQLModel, table=True):
    """A logical model's split between a stable and a candidate arm."""

    __tablename__ = "traffic_policy"

    logical: str = Field(primary_key=True, max_length=128)
    stable: str = Field(max_length=300)
    """A model version reference as given (``name@production`` follows the alias)."""
    candidate: str | None = Field(default=None, max_length=300)
    weight: float = Field(default=0.0)
    """Percent of traffic for the candidate, 0 to 100."""
    sticky: str | None = Field(default=None, max_length=200)
    """``header:<name>``, ``conversation`` or None (each request drawn on its own)."""
    shadow: float = Field(default=0.0)
    """Share (0-1) of answered requests mirrored to the other arm, answers never returned."""
    cohorts: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    """Header rules (``{"header": "x-tier", "values": ["beta"]}``): a request matching one goes
    to the candidate whatever the weight (counted as arm ``cohort``)."""
    candidates: list[dict[str, Any]] | None = Field(default=None, sa_column=Column(JSON))
    """A bandit's arms (``{"ref": "name@7", "share": 0.6}``): the candidate weight is shared
    among them; None: the one ``candidate``."""
    killed: bool = Field(default=False)
    revision: int = Field(default=1)
    """Bumped by every change: writers compare it, so one of two racing changes wins."""
    updated_by: str = Field(max_length=256)
    updated_at: datetime = _ts()


class GatewayKey(SQLModel, table=True):
    """A gateway API key: only its SHA-256 is stored."""

    __tablename__ = "gateway_key"

    id: str = Field(primary_key=True, max_length=40)
    digest: str = Field(max_length=64, unique=True)
    prefix: str = Field(max_length=16)
    """The key's first characters, to tell keys apart in listings."""
    name: str = Field(default="", max_length=128)
    models: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    """Logical models the key may call (empty: all)."""
    rate_per_minute: int | None = Field(default=None)
    created_by: str = Field(max_length=256)
    created_at: datetime = _ts()
    revoked_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class ServeRequest(SQLModel, table=True):
    """One request the gateway answered (written in batches): never its contents."""

    __tablename__ = "serve_request"
    __table_args__ = (
        Index("ix_serve_request_arm", "logical", "arm", "at"),
        Index("ix_serve_request_at", "logical", "at"),
    )

    id: int | None = Field(default=None, primary_key=True)
    response_id: str = Field(max_length=40, unique=True)
    logical: str = Field(max_length=128)
    arm: str = Field(max_length=16)
    """``stable``, ``candidate``, ``shadow`` (a mirrored request) or ``direct``."""
    model: str = Field(max_length=300)
    """The model version that answered (``name@7``)."""
    at: datetime = _ts()
    status: int
    error: bool = Field(default=False)
    failover: bool = Field(default=False)
    """The candidate failed and the stable arm answered this request."""
    latency_ms: float
    ttft_ms: float | None = Field(default=None)
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    replica: str = Field(max_length=64)
    key_id: str | None = Field(default=None, max_length=40)


class ServeRollup(SQLModel, table=True):
    """Per-minute totals of the request log per logical model, arm and model version."""

    __tablename__ = "serve_rollup"

    logical: str = Field(primary_key=True, max_length=128)
    arm: str = Field(primary_key=True, max_length=16)
    model: str = Field(primary_key=True, max_length=300)
    minute: datetime = Field(
        sa_column=Column(DateTime(timezone=True), primary_key=True, nullable=False)
    )
    requests: int = Field(default=0)
    errors: int = Field(default=0)
    failovers: int = Field(default=0)
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)


class ServeLatencyBucket(SQLModel, table=True):
    """Per-minute latency histogram of answered requests (5% wide log-spaced buckets)."""

    __tablename__ = "serve_latency_bucket"

    logical: str = Field(primary_key=True, max_length=128)
    arm: str = Field(primary_key=True, max_length=16)
    minute: datetime = Field(
        sa_column=Column(DateTime(timezone=True), primary_key=True, nullable=False)
    )
    bucket: int = Field(primary_key=True)
    """Latencies in ``[1.05**bucket, 1.05**(bucket + 1))`` milliseconds."""
    count: int = Field(default=0)


class ServeFeedback(SQLModel, table=True):
    """A score or thumbs for one response, kept with the arm that gave it."""

    __tablename__ = "serve_feedback"

    id: int | None = Field(default=None, primary_key=True)
    response_id: str = Field(max_length=40, index=True)
    logical: str = Field(max_length=128)
    arm: str = Field(max_length=16)
    model: str = Field(max_length=300)
    score: float
    """1.0 for thumbs up, 0.0 for down, or any score in [0, 1]."""
    comment: str = Field(default="")
    key_id: str | None = Field(default=None, max_length=40)
    at: datetime = _ts()


class ShadowPair(SQLModel, table=True):
    """One mirrored request: the stable arm's answer (returned) and the candidate's (not)."""

    __tablename__ = "shadow_pair"
    __table_args__ = (Index("ix_shadow_pair_logical", "logical", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    response_id: str = Field(max_length=40)
    logical: str = Field(max_length=128)
    stable_model: str = Field(max_length=300)
    candidate_model: str = Field(max_length=300)
    messages: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    stable_answer: str
    candidate_answer: str | None = Field(default=None)
    candidate_error: str | None = Field(default=None, max_length=1000)
    stable_latency_ms: float
    candidate_latency_ms: float | None = Field(default=None)
    at: datetime = _ts()
    served: str = Field(default="stable", max_length=16)
    """The arm whose answer the client got; the other arm's answer was mirrored."""
    verdict: str | None = Field(default=None, max_length=16)
    """The pairwise judge's verdict: ``candidate``, ``stable`` or ``tie`` (None: not judged)."""
    consistent: bool | None = Field(default=None)
    """The judge gave the same verdict in both presentation orders."""
    judged_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    judge_error: str | None = Field(default=None, max_length=1000)
    """Why the judge gave no verdict (its replies had none, or the call failed)."""
    judge_details: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON))
    """The judge's replies in both orders (evidence)."""


class CanaryRow(SQLModel, table=True):
    """A progressive rollout of a candidate on a logical model (one live canary per model)."""

    __tablename__ = "canary"

    logical: str = Field(primary_key=True, max_length=128)
    candidate: str = Field(max_length=300)
    """The model version being rolled out (``name@7``: resolved when the canary started)."""
    stable: str = Field(max_length=300)
    """The policy's stable arm as written (``name@production``): promotion moves that alias."""
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    state: str = Field(max_length=24)
    """``running``, ``paused``, ``awaiting_approval``, ``rolled_back`` or ``promoted``."""
    step: int = Field(default=0)
    """Index into the spec's steps."""
    step_started_at: datetime = _ts()
    started_at: datetime = _ts()
    started_by: str = Field(max_length=256)
    reason: str = Field(default="")
    """Why it ended (rollback or promotion), or why it waits."""
    revision: int = Field(default=1)
    updated_at: datetime = _ts()


class CanaryDecisionRow(SQLModel, table=True):
    """One decision of a canary with the numbers that made it."""

    __tablename__ = "canary_decision"
    __table_args__ = (Index("ix_canary_decision_logical", "logical", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    logical: str = Field(max_length=128)
    at: datetime = _ts()
    action: str = Field(max_length=24)
    """``start``, ``advance``, ``hold``, ``rollback``, ``promote``, ``pause``, ``resume``."""
    reason: str
    step: int
    weight: float
    numbers: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    actor: str = Field(max_length=256)


class ServeLease(SQLModel, table=True):
    """A leader lease: one gateway replica runs a logical model's controller at a time."""

    __tablename__ = "serve_lease"

    name: str = Field(primary_key=True, max_length=160)
    holder: str = Field(max_length=128)
    expires_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
