"""Typed records of the model registry: what ``llmops models ... --json`` prints and the
notebook API returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from llmops._display import Display
from llmops._record import Record

__all__ = [
    "ApprovalResult",
    "Condition",
    "ModelSummary",
    "ModelVersionInfo",
    "PromotionVerdict",
    "RollbackResult",
]


@dataclass(slots=True, kw_only=True, repr=False)
class Condition(Display, Record):
    """One policy condition and whether it holds."""

    _repr_fields = ("name", "ok", "detail")

    name: str
    """``require_kind``, ``evals[0]``, ``evals[0].beat_current``, ``approvals``, ..."""
    ok: bool
    detail: str
    """What was found, in one sentence (run ids, values, p-values)."""


@dataclass(slots=True, kw_only=True, repr=False)
class PromotionVerdict(Display, Record):
    """The outcome of ``promote``: moved, or which conditions hold and which do not."""

    _repr_fields = ("ref", "alias", "promoted", "dry_run", "unmet", "request_id")

    name: str
    version: int
    alias: str
    promoted: bool
    """The alias moved (False on a dry run or when a condition failed)."""
    dry_run: bool
    conditions: list[Condition]
    previous: int | None
    """The alias's holder when the conditions were checked."""
    policy: str | None
    """The policy file, None when no policy guards the alias."""
    policy_digest: str | None
    request_id: int | None = None
    """The promotion request waiting for approvals, if one was recorded."""
    evidence: list[dict[str, Any]] = field(default_factory=list)
    """The eval runs the decision used, with their values and p-values."""

    _json_computed = ("ref", "ok")

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"

    @property
    def ok(self) -> bool:
        """Every condition holds."""
        return all(c.ok for c in self.conditions)

    @property
    def unmet(self) -> list[str]:
        """Names of the conditions that do not hold."""
        return [c.name for c in self.conditions if not c.ok]


@dataclass(slots=True, kw_only=True, repr=False)
class ApprovalResult(Display, Record):
    """An approval or rejection recorded on a promotion request."""

    _repr_fields = ("ref", "alias", "decision", "approver", "approvals", "needed")

    request_id: int
    name: str
    version: int
    alias: str
    approver: str
    decision: str
    approvals: int
    """Approvals that count under the policy, this one included."""
    needed: int

    _json_computed = ("ref",)

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"


@dataclass(slots=True, kw_only=True, repr=False)
class RollbackResult(Display, Record):
    """An alias moved back to its previous holder."""

    _repr_fields = ("name", "alias", "version", "previous")

    name: str
    alias: str
    version: int
    """The new holder."""
    previous: int
    """The holder before the rollback."""


@dataclass(slots=True, kw_only=True, repr=False)
class ModelSummary(Display, Record):
    """One model: its kind, latest version, aliases and semantic versions."""

    _repr_fields = ("name", "kind", "latest_version", "aliases")

    name: str
    kind: str
    latest_version: int
    versions: int
    aliases: dict[str, int]
    """Alias -> version."""
    guarded: list[str]
    """Aliases a policy guards."""

    def flat(self) -> dict[str, Any]:
        """One row for DataFrames."""
        return {"name": self.name, "kind": self.kind, "latest_version": self.latest_version,
                "versions": self.versions,
                **{f"alias.{a}": v for a, v in self.aliases.items()}}  # fmt: skip


@dataclass(slots=True, kw_only=True, repr=False)
class ModelVersionInfo(Display, Record):
    """One model version with what the registry knows about it."""

    _repr_fields = ("ref", "kind", "digest", "aliases", "semver", "eval_runs")

    name: str
    version: int
    digest: str
    kind: str
    semver: str | None
    base_model: str | None
    """``name@version`` of the base model an adapter or merged model was made from."""
    run: str | None
    """The training run that made it."""
    parents: list[str]
    aliases: list[str]
    eval_runs: list[str]
    """Completed eval runs that tested this exact version (by digest), newest first."""
    promotions: list[dict[str, Any]]
    """Requests, approvals, promotions, refusals and rollbacks, oldest first."""
    created_by: str
    created_at: datetime

    _json_computed = ("ref",)

    @property
    def ref(self) -> str:
        """``name@version``."""
        return f"{self.name}@{self.version}"
