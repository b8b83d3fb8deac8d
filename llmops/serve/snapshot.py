"""The gateway's routing table: an immutable snapshot of policies, backends and keys, rebuilt
from the registry database every ``refresh_s`` seconds off the hot path (a request costs a hash
and dictionary lookups; it never reads the database).

Aliases resolve here: a policy arm ``support-lora@production`` names whatever version the alias
holds at the latest refresh, so a promotion reaches every replica within one interval.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import col

from llmops.db.models import Artifact, ArtifactAlias, GatewayKey, ServeBackend, TrafficPolicyRow
from llmops.errors import NotFoundError
from llmops.serve.split import Sticky, parse_sticky

if TYPE_CHECKING:
    from llmops.registry import ModelRegistry

__all__ = ["Key", "Route", "Snapshot", "Target", "build_snapshot"]


@dataclass(frozen=True, slots=True)
class Target:
    """One backend that answers for a model version."""

    url: str
    served_name: str
    backend_id: str


@dataclass(frozen=True, slots=True)
class ArmRoute:
    """A policy arm as resolved now."""

    ref: str
    """As the policy names it (``name@production``)."""
    model: str | None
    """The version it resolves to (``name@7``); None when it names none."""
    targets: tuple[Target, ...]


@dataclass(frozen=True, slots=True)
class Route:
    """Where requests for one logical model (or one model version, called directly) go."""

    logical: str
    stable: ArmRoute
    candidate: ArmRoute | None
    weight: float
    sticky: Sticky | None
    shadow: float
    killed: bool
    revision: int
    direct: bool = False
    """A model version called by its reference, outside any policy."""
    cohorts: tuple[tuple[str, frozenset[str]], ...] = ()
    """Header rules: a request whose header holds one of the values goes to the candidate."""
    candidates: tuple[tuple[ArmRoute, float], ...] = ()
    """A bandit's candidates with their shares of the candidate weight (empty: ``candidate``)."""

    def in_cohort(self, headers: Any) -> bool:
        """Whether a request's headers match a cohort rule (every copy of a header, and each
        item of a comma-separated value, counts)."""
        for header, values in self.cohorts:
            for given in headers.getall(header, ()):
                if any(item.strip() in values for item in given.split(",")):
                    return True
        return False

    def pick(self, draw: float) -> ArmRoute | None:
        """The candidate for a draw in [0, 1): by the bandit's shares, else ``candidate``."""
        total = 0.0
        for arm, share in self.candidates:
            total += share
            if draw < total:
                return arm
        return self.candidates[-1][0] if self.candidates else self.candidate


@dataclass(frozen=True, slots=True)
class Key:
    """A usable API key."""

    id: str
    models: frozenset[str]
    rate_per_minute: int | None


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the gateway routes with."""

    routes: dict[str, Route] = field(default_factory=dict)
    keys: dict[str, Key] = field(default_factory=dict)
    """SHA-256 of the secret -> key (keys that work)."""
    auth_required: bool = False
    """Once any key was created, every request needs one: revoking the last key closes the
    gateway, never opens it."""
    built_at: float = 0.0


def build_snapshot(models: ModelRegistry) -> Snapshot:
    """Read policies, backends, aliases and keys in one pass."""
    db = models.db
    with db.read() as session:
        backends = session.scalars(
            select(ServeBackend)
            .where(col(ServeBackend.status) == "up")
            .order_by(col(ServeBackend.created_at))
        ).all()
        policies = session.scalars(select(TrafficPolicyRow)).all()
        key_rows = session.scalars(select(GatewayKey)).all()
        served = sorted({b.model for b in backends})
        aliases = session.execute(
            select(col(Artifact.name), col(ArtifactAlias.alias), col(ArtifactAlias.version))
            .join(Artifact, col(Artifact.id) == col(ArtifactAlias.artifact_id))
            .where(col(Artifact.name).in_(served))
        ).all()
    by_version: dict[str, list[Target]] = {}
    for b in backends:
        by_version.setdefault(f"{b.model}@{b.version}", []).append(
            Target(url=b.url, served_name=b.served_name, backend_id=b.id)
        )

    def arm(ref: str) -> ArmRoute:
        try:
            resolved: str | None = models.get(ref).ref
        except NotFoundError:
            resolved = None
        targets = tuple(by_version.get(resolved, ())) if resolved else ()
        return ArmRoute(ref=ref, model=resolved, targets=targets)

    routes: dict[str, Route] = {}
    for ref, targets in by_version.items():  # direct calls: name@7, name@<alias>
        direct = ArmRoute(ref=ref, model=ref, targets=tuple(targets))
        routes[ref] = Route(
            logical=ref,
            stable=direct,
            candidate=None,
            weight=0.0,
            sticky=None,
            shadow=0.0,
            killed=False,
            revision=0,
            direct=True,
        )
    for name, alias, version in aliases:
        target = routes.get(f"{name}@{version}")
        if target is not None:
            routes[f"{name}@{alias}"] = target
    for p in policies:  # a logical name wins over a model reference of the same spelling
        routes[p.logical] = Route(
            logical=p.logical,
            stable=arm(p.stable),
            candidate=arm(p.candidate) if p.candidate else None,
            weight=p.weight,
            sticky=parse_sticky(p.sticky),
            shadow=p.shadow,
            killed=p.killed,
            revision=p.revision,
            cohorts=tuple((c["header"], frozenset(c["values"])) for c in p.cohorts or ()),
            candidates=tuple((arm(c["ref"]), float(c["share"])) for c in p.candidates or ()),
        )
    keys = {
        k.digest: Key(id=k.id, models=frozenset(k.models), rate_per_minute=k.rate_per_minute)
        for k in key_rows
        if k.revoked_at is None
    }
    return Snapshot(
        routes=routes, keys=keys, auth_required=bool(key_rows), built_at=time.monotonic()
    )
