"""Typed records of serving: what ``llmops serve|traffic|gateway ... --json`` prints and
``ws.serving`` returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmops._display import Display
from llmops._record import Record

__all__ = ["ApiKey", "ArmStats", "Backend", "CreatedKey", "TrafficPolicy", "TrafficStatus"]


@dataclass(slots=True, kw_only=True, repr=False)
class Backend(Display, Record):
    """An OpenAI-compatible server answering for one model version."""

    _repr_fields = ("id", "ref", "served_name", "url", "kind", "status")

    id: str
    model: str
    version: int
    digest: str
    served_name: str
    url: str
    kind: str
    """``local``, ``vllm`` or ``external``."""
    base: str | None
    pid: int | None
    status: str
    created_by: str
    created_at: datetime

    _json_computed = ("ref",)

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.model}@{self.version}"


@dataclass(slots=True, kw_only=True, repr=False)
class TrafficPolicy(Display, Record):
    """A logical model's arms and split."""

    _repr_fields = ("logical", "stable", "candidate", "weight", "sticky", "shadow", "killed")

    logical: str
    stable: str
    candidate: str | None
    weight: float
    """Percent of requests the candidate answers (0 while killed)."""
    sticky: str | None
    shadow: float
    killed: bool
    revision: int
    updated_by: str
    updated_at: datetime
    cohorts: list[dict[str, Any]] = field(default_factory=list)
    """Header rules sending a segment to the candidate (``{"header", "values"}``)."""
    candidates: list[dict[str, Any]] = field(default_factory=list)
    """A bandit's candidates and their shares of the candidate weight."""


@dataclass(slots=True, kw_only=True, repr=False)
class ArmStats(Display, Record):
    """One arm's numbers from the gateway's request log (all replicas)."""

    _repr_fields = ("arm", "requests", "errors", "error_rate", "p50_ms", "p95_ms")

    arm: str
    requests: int
    errors: int
    failovers: int
    """Candidate requests that failed and were answered by stable (counted as errors here)."""
    p50_ms: float | None
    p95_ms: float | None
    completion_tokens: int
    feedback: int
    feedback_mean: float | None
    models: list[str] = field(default_factory=list)
    """The model versions that answered on this arm."""

    _json_computed = ("error_rate",)

    @property
    def error_rate(self) -> float | None:
        """Errors over requests (None without requests)."""
        return self.errors / self.requests if self.requests else None


@dataclass(slots=True, kw_only=True, repr=False)
class TrafficStatus(Display, Record):
    """A policy with its resolved model versions and per-arm numbers."""

    _repr_fields = ("logical", "stable", "candidate", "weight", "killed", "arms")

    logical: str
    stable: str
    candidate: str | None
    weight: float
    sticky: str | None
    shadow: float
    killed: bool
    revision: int
    resolved: dict[str, str | None]
    """Arm -> the model version its reference names now (``name@7``), None if unresolvable."""
    arms: dict[str, ArmStats]
    shadow_pairs: int
    updated_by: str
    updated_at: datetime
    cohorts: list[dict[str, Any]] = field(default_factory=list)
    """Header rules sending a segment to the candidate."""
    candidates: list[dict[str, Any]] = field(default_factory=list)
    """A bandit's candidates and their shares of the candidate weight."""

    def to_json(self) -> dict[str, Any]:
        """The policy, with ``requests`` and ``errors`` per arm at ``arms.<arm>``."""
        out = Record.to_json(self)
        out["requests"] = {arm: s.requests for arm, s in self.arms.items()}
        out["errors"] = {arm: s.errors for arm, s in self.arms.items()}
        return out


@dataclass(slots=True, kw_only=True, repr=False)
class ApiKey(Display, Record):
    """A gateway API key as listed (never the key itself)."""

    _repr_fields = ("id", "prefix", "name", "models", "rate_per_minute", "revoked")

    id: str
    prefix: str
    name: str
    models: list[str]
    rate_per_minute: int | None
    created_by: str
    created_at: datetime
    revoked_at: datetime | None

    _json_computed = ("revoked",)

    @property
    def revoked(self) -> bool:
        """The key no longer works."""
        return self.revoked_at is not None


@dataclass(slots=True, kw_only=True, repr=False)
class CreatedKey(Display, Record):
    """A new key: ``secret`` is shown once and never stored."""

    _repr_fields = ("key",)

    key: ApiKey
    secret: str
