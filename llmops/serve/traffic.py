"""Traffic policies: per logical model, a stable arm, an optional candidate with a weight,
stickiness, a shadow share and a kill switch.

Changes happen in one write transaction under the policy's row lock and are audited
(``traffic.set``, ``traffic.kill``). A change names only what it changes and keeps the rest, and
``if_revision`` makes it a compare-and-set: of two operators editing the same policy, one wins
and the other gets a :class:`~llmops.errors.ConflictError` instead of silently undoing the first.
"""

from __future__ import annotations

import builtins
import math
import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import col

from llmops.db.audit import record_event
from llmops.db.models import TrafficPolicyRow
from llmops.db.timestamps import as_utc, utcnow
from llmops.errors import ConflictError, InputError, NotFoundError
from llmops.refs import check_name
from llmops.serve.records import TrafficPolicy
from llmops.serve.split import parse_sticky

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from llmops.db import Database
    from llmops.registry import ModelRegistry

__all__ = ["UNSET", "Traffic", "to_policy"]


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()
"""Leave this field as it is (the default of every :meth:`Traffic.set` option)."""


def to_policy(row: TrafficPolicyRow) -> TrafficPolicy:
    """The record of a policy row."""
    return TrafficPolicy(
        logical=row.logical,
        stable=row.stable,
        candidate=row.candidate,
        weight=row.weight,
        sticky=row.sticky,
        shadow=row.shadow,
        killed=row.killed,
        revision=row.revision,
        updated_by=row.updated_by,
        updated_at=as_utc(row.updated_at),
        cohorts=list(row.cohorts or []),
        candidates=list(row.candidates or []),
    )


def _state(row: TrafficPolicyRow | None) -> dict[str, Any] | None:
    if row is None:
        return None
    return {
        "stable": row.stable,
        "candidate": row.candidate,
        "weight": row.weight,
        "sticky": row.sticky,
        "shadow": row.shadow,
        "cohorts": row.cohorts,
        "candidates": row.candidates,
        "killed": row.killed,
        "revision": row.revision,
    }


_COHORT_HEADER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}")


def parse_cohorts(value: Any) -> list[dict[str, Any]] | None:
    """Checked header rules (None or [] for none): ``[{"header": NAME, "values": [...]}]``, or
    the CLI's ``NAME=VALUE[,VALUE...]`` strings.

    Raises:
        InputError: A rule is malformed.
    """
    if not value:
        return None
    if isinstance(value, (str, Mapping)):
        value = [value]
    rules: list[dict[str, Any]] = []
    for given in value:
        item = given
        if isinstance(given, str):
            name, sep, listed = given.partition("=")
            item = {"header": name, "values": listed.split(",")} if sep else {"header": given}
        if not isinstance(item, Mapping):
            raise InputError(f"cohort {item!r} is not a header rule")
        header = str(item.get("header", "")).strip()
        given_values = item.get("values") or ()
        if isinstance(given_values, (str, bytes)) or not isinstance(given_values, Sequence):
            given_values = ()  # "beta" is not a list of values
        values = [str(v).strip() for v in given_values if str(v).strip()]
        if not _COHORT_HEADER.fullmatch(header) or not values:
            raise InputError(
                f"cohort {item!r} is not HEADER=VALUE[,VALUE...]",
                hint="e.g. --cohort x-tier=beta,internal (requests with that header value go"
                " to the candidate)",
            )
        if len(values) > 1000 or any(len(v) > 200 for v in values):
            raise InputError(f"cohort {header}: at most 1,000 values of 200 characters each")
        rules.append({"header": header.lower(), "values": sorted(set(values))})
    if len(rules) > 20:
        raise InputError("at most 20 cohort rules per logical model")
    return rules


def _weight(value: Any) -> float:
    try:
        weight = float(value)
    except (TypeError, ValueError):
        raise InputError(
            f"weight {value!r} is not a number", hint="give a percentage from 0 to 100"
        ) from None
    if not math.isfinite(weight) or not 0 <= weight <= 100:
        raise InputError(
            f"weight {value!r} is outside 0-100",
            hint="the candidate's weight is a percentage of requests, from 0 to 100",
        )
    return round(weight, 2) + 0.0  # -0 is 0


def _shadow(value: Any) -> float:
    try:
        share = float(value)
    except (TypeError, ValueError):
        share = math.nan
    if not math.isfinite(share) or not 0 <= share <= 1:
        raise InputError(
            f"shadow {value!r} is outside 0-1",
            hint="the shadow share is the fraction of answered requests mirrored to the other"
            " arm (0.1 = 10%)",
        )
    return share


class Traffic:
    """Traffic policies of logical models (``ws.serving.traffic``)."""

    def __init__(self, db: Database, models: ModelRegistry, *, actor: str) -> None:
        self.db = db
        self.models = models
        self.actor = actor

    def __repr__(self) -> str:
        return "Traffic(.set(logical, stable=..., candidate=..., weight=...), .kill, .show, .list)"

    def get(self, logical: str) -> TrafficPolicy:
        """The policy of ``logical``.

        Raises:
            NotFoundError: There is none.
        """
        with self.db.read() as session:
            row = session.get(TrafficPolicyRow, logical)
        if row is None:
            raise NotFoundError(
                f"no traffic policy for logical model {logical!r}",
                hint=f"create one with `llmops traffic set {logical} --stable NAME@VERSION`",
            )
        return to_policy(row)

    def list(self) -> builtins.list[TrafficPolicy]:
        """Every policy, by logical name."""
        with self.db.read() as session:
            rows = session.scalars(
                select(TrafficPolicyRow).order_by(col(TrafficPolicyRow.logical))
            ).all()
        return [to_policy(r) for r in rows]

    def resolve(self, ref: str | None) -> str | None:
        """The model version ``ref`` names now (``name@7``), or None when it names none."""
        if ref is None:
            return None
        try:
            return self.models.get(ref).ref
        except NotFoundError:
            return None

    def _check_ref(self, ref: str, arm: str) -> str:
        if not isinstance(ref, str) or not ref.strip():
            raise InputError(f"the {arm} arm is empty", hint="name a model version: NAME@VERSION")
        ref = ref.strip()
        self.models.get(ref)  # raises a NotFoundError naming the reference
        return ref

    def set(
        self,
        logical: str,
        *,
        stable: str = UNSET,
        candidate: str | None = UNSET,
        weight: float = UNSET,
        sticky: str | None = UNSET,
        shadow: float = UNSET,
        cohorts: Sequence[Mapping[str, Any] | str] | None = UNSET,
        candidates: Sequence[Mapping[str, Any]] | None = UNSET,
        if_revision: int | None = None,
        by_canary: bool = False,
    ) -> TrafficPolicy:
        """Create or change a policy; options left out keep their current values.

        Args:
            logical: The model name clients send (``support-bot``).
            stable: The stable arm: a model version reference (``name@production`` follows the
                alias as it moves; ``name@7`` stays on version 7).
            candidate: The candidate arm (None removes it and its weight).
            weight: Percent of requests the candidate answers, 0-100 (clears a kill).
            sticky: ``header:<name>``, ``conversation``, or None.
            shadow: Share (0-1) of answered requests mirrored to the other arm (stable answers
                to the candidate; candidate answers, while it has weight, to stable).
            cohorts: Header rules, ``[{"header": "x-tier", "values": ["beta"]}]``: matching
                requests go to the candidate whatever the weight (None or [] removes them).
            candidates: A bandit's arms and shares, ``[{"ref": "name@7", "share": 0.5}]``
                (shares sum to 1; the canary controller sets these).
            if_revision: Apply only if the policy is still at this revision.
            by_canary: The canary controller moving its own weight (anyone else's weight
                change is refused while a canary is live).

        Raises:
            InputError: A value is out of range, or the candidate equals the stable arm.
            NotFoundError: A reference names no model version.
            ConflictError: ``if_revision`` no longer matches.
        """
        check_name(logical, what="logical model name")
        fields = self._fields(stable, candidate, weight, sticky, shadow)
        fields.update(self._segments(fields, cohorts, candidates))
        if "weight" in fields and not by_canary:
            self._refuse_if_canary(logical)
        with self.db.write() as session:
            row = self._locked(session, logical)
            before = _state(row)
            if row is None:
                if "stable" not in fields:
                    raise InputError(
                        f"logical model {logical!r} has no policy yet, so it needs a stable arm",
                        hint=f"llmops traffic set {logical} --stable NAME@VERSION",
                    )
                row = TrafficPolicyRow(
                    logical=logical, stable=fields["stable"], updated_by=self.actor, revision=0
                )
            if if_revision is not None and row.revision != if_revision:
                raise ConflictError(
                    f"traffic policy {logical!r} is at revision {row.revision}, not {if_revision}"
                    f" (changed by {row.updated_by})",
                    hint=f"see `llmops traffic show {logical}` and decide again",
                )
            for name, value in fields.items():
                setattr(row, name, value)
            if row.candidate is None:
                if fields.get("weight") or fields.get("shadow"):
                    raise InputError(
                        f"logical model {logical!r} has no candidate to give a weight or shadow"
                        " share to",
                        hint="add --candidate NAME@VERSION",
                    )
                if fields.get("cohorts"):
                    raise InputError(
                        f"logical model {logical!r} has no candidate to send a cohort to",
                        hint="add --candidate NAME@VERSION",
                    )
                row.weight, row.shadow, row.cohorts, row.candidates = 0.0, 0.0, None, None
            if "stable" in fields or "candidate" in fields:
                # Only a change of the arms is checked: an alias that moved since (both arms
                # now naming one version) must not lock the other settings; `show` flags it.
                self._check_arms(row)
            if _state(row) == before:
                return to_policy(row)
            return self._commit(session, row, "traffic.set", before)

    def _fields(
        self, stable: Any, candidate: Any, weight: Any, sticky: Any, shadow: Any
    ) -> dict[str, Any]:
        """The checked values of the options that were given."""
        fields: dict[str, Any] = {}
        if stable is not UNSET:
            fields["stable"] = self._check_ref(stable, "stable")
        if candidate is not UNSET:
            fields["candidate"] = (
                None if candidate is None else self._check_ref(candidate, "candidate")
            )
        if weight is not UNSET:
            fields["weight"] = _weight(weight)
            fields["killed"] = False
        if sticky is not UNSET:
            try:
                parsed = parse_sticky(sticky)
            except ValueError as exc:
                raise InputError(str(exc)) from None
            fields["sticky"] = None if parsed is None else str(parsed)
        if shadow is not UNSET:
            fields["shadow"] = _shadow(shadow)
        return fields

    def _segments(self, fields: dict[str, Any], cohorts: Any, candidates: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if cohorts is not UNSET:
            out["cohorts"] = parse_cohorts(cohorts)
        if candidates is not UNSET:
            out["candidates"] = self._shares(candidates)
        elif "candidate" in fields:
            out["candidates"] = None  # a new candidate ends a bandit's split
        return out

    def _shares(
        self, value: Sequence[Mapping[str, Any]] | None
    ) -> builtins.list[dict[str, Any]] | None:
        if not value:
            return None
        out: builtins.list[dict[str, Any]] = []
        total = 0.0
        for item in value:
            share = float(item.get("share", -1))
            if not math.isfinite(share) or not 0 <= share <= 1:
                raise InputError(f"candidate share {item.get('share')!r} is outside 0-1")
            total += share
            out.append({"ref": self._check_ref(str(item.get("ref", "")), "candidate"),
                        "share": round(share, 6)})  # fmt: skip
        if abs(total - 1) > 1e-3:
            raise InputError("the candidates' shares must sum to 1")
        return out

    def _refuse_if_canary(self, logical: str) -> None:
        from llmops.db.models import CanaryRow

        with self.db.read() as session:
            canary = session.get(CanaryRow, logical)
        if canary is not None and canary.state not in ("rolled_back", "promoted"):
            raise InputError(
                f"a canary of {canary.candidate} controls the weight of {logical!r}"
                f" ({canary.state})",
                hint=f"llmops canary pause|advance|rollback {logical}, or traffic kill {logical}",
            )

    def _check_arms(self, row: TrafficPolicyRow) -> None:
        if row.candidate is None:
            return
        same = row.candidate == row.stable
        if not same:
            stable, candidate = self.resolve(row.stable), self.resolve(row.candidate)
            same = stable is not None and stable == candidate
        if same:
            raise InputError(
                f"the candidate {row.candidate} is the stable arm {row.stable}",
                hint="name another model version as the candidate, or --candidate none",
            )

    def kill(self, logical: str, *, reason: str = "") -> TrafficPolicy:
        """The kill switch: every request goes to the stable arm at once (weight and shadow 0).

        Raises:
            NotFoundError: ``logical`` has no policy.
        """
        with self.db.write() as session:
            row = self._locked(session, logical)
            if row is None:
                raise NotFoundError(
                    f"no traffic policy for logical model {logical!r}",
                    hint="see `llmops traffic list`",
                )
            before = _state(row)
            row.weight, row.shadow, row.killed = 0.0, 0.0, True
            return self._commit(session, row, "traffic.kill", before, {"reason": reason})

    def _commit(
        self,
        session: Session,
        row: TrafficPolicyRow,
        action: str,
        before: dict[str, Any] | None,
        note: dict[str, Any] | None = None,
    ) -> TrafficPolicy:
        """A new revision of ``row``, audited (with ``note``) in the same transaction."""
        row.revision += 1
        row.updated_by, row.updated_at = self.actor, utcnow()
        session.add(row)
        after = {**(_state(row) or {}), **(note or {})}
        record_event(session, actor=self.actor, action=action, entity_type="traffic",
                     entity_key=row.logical, before=before, after=after)  # fmt: skip
        session.flush()
        return to_policy(row)

    @staticmethod
    def _locked(session: Session, logical: str) -> TrafficPolicyRow | None:
        return session.scalars(
            select(TrafficPolicyRow)
            .where(col(TrafficPolicyRow.logical) == logical)
            .with_for_update()
        ).first()

    def history(self, logical: str) -> builtins.list[dict[str, Any]]:
        """The audited changes of ``logical``'s policy, oldest first.

        Raises:
            NotFoundError: ``logical`` never had a policy.
        """
        from llmops.db.models import AuditEvent

        with self.db.read() as session:
            rows = session.scalars(
                select(AuditEvent)
                .where(
                    col(AuditEvent.entity_type) == "traffic", col(AuditEvent.entity_key) == logical
                )
                .order_by(col(AuditEvent.id))
            ).all()
        if not rows:
            raise NotFoundError(
                f"no traffic policy for logical model {logical!r}", hint="see `llmops traffic list`"
            )
        return [
            {
                "at": r.at.isoformat(),
                "actor": r.actor,
                "action": r.action,
                "before": r.before,
                "after": r.after,
            }
            for r in rows
        ]
