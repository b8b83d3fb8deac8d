"""Canaries: a candidate's progressive rollout on a logical model, step by step through the
spec's weights, judged on its own live traffic by the controller (:mod:`llmops.serve.controller`)
and rolled back or promoted automatically, or by hand.

The state lives in the registry database (``canary``, ``canary_decision``): a restarted gateway
resumes where the canary was, and every start, step, hold, rollback and promotion is a decision
row with the numbers that made it, an audit row and (for steps, rollbacks and promotions) a
registry event.
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select
from sqlmodel import col

from llmops._display import Display
from llmops._record import Record
from llmops.db.audit import record_event
from llmops.db.models import CanaryDecisionRow, CanaryRow
from llmops.db.outbox import emit
from llmops.db.timestamps import as_utc, utcnow
from llmops.errors import ConflictError, InputError, NotFoundError, ServingError
from llmops.serve.canary_spec import CanarySpec, parse_spec

if TYPE_CHECKING:
    from sqlalchemy.orm import Session

    from llmops.serve.records import ArmStats
    from llmops.serve.serving import Serving

__all__ = ["FINAL_STATES", "Canaries", "CanarySpec", "CanaryStatus", "Decision"]

FINAL_STATES = frozenset({"rolled_back", "promoted"})


@dataclass(slots=True, kw_only=True, repr=False)
class Decision(Display, Record):
    """What the controller (or a person) decided, and why."""

    _repr_fields = ("action", "reason", "step", "weight")

    action: str
    reason: str
    step: int
    weight: float
    numbers: dict[str, Any] = field(default_factory=dict)
    at: datetime | None = None
    actor: str = ""


@dataclass(slots=True, kw_only=True, repr=False)
class CanaryStatus(Display, Record):
    """A canary's state, its arms' numbers on the current step, and its decisions."""

    _repr_fields = ("logical", "state", "step", "weight", "candidate", "last")

    logical: str
    candidate: str
    stable: str
    state: str
    step: int
    steps: list[float]
    weight: float
    spec: dict[str, Any]
    reason: str
    started_at: datetime
    step_started_at: datetime
    arms: dict[str, ArmStats]
    analysis: dict[str, Any]
    decisions: list[Decision]

    _json_computed = ("last",)

    @property
    def last(self) -> Decision | None:
        """The latest decision."""
        return self.decisions[-1] if self.decisions else None


def _decision(row: CanaryDecisionRow) -> Decision:
    return Decision(
        action=row.action,
        reason=row.reason,
        step=row.step,
        weight=row.weight,
        numbers=dict(row.numbers),
        at=as_utc(row.at),
        actor=row.actor,
    )


class Canaries:
    """Canaries of logical models (``ws.serving.canaries``)."""

    def __init__(self, serving: Serving) -> None:
        self.serving = serving
        self.db = serving.db
        self.actor = serving.actor

    def __repr__(self) -> str:
        return "Canaries(.start(logical, candidate=..., steps=[...]), .status, .rollback, .list)"

    # -- reading ---------------------------------------------------------------------------

    def row(self, logical: str) -> CanaryRow:
        """The canary row of ``logical``.

        Raises:
            NotFoundError: It has none.
        """
        with self.db.read() as session:
            row = session.get(CanaryRow, logical)
        if row is None:
            raise NotFoundError(
                f"no canary on logical model {logical!r}",
                hint=f"start one with `llmops canary start {logical} --candidate NAME@V`",
            )
        return row

    def decisions(
        self, logical: str, *, limit: int = 200, since: datetime | None = None
    ) -> builtins.list[Decision]:
        """The newest ``limit`` decisions (``since``: from then on), oldest first."""
        where = [col(CanaryDecisionRow.logical) == logical]
        if since is not None:
            where.append(col(CanaryDecisionRow.at) >= since)
        with self.db.read() as session:
            rows = session.scalars(
                select(CanaryDecisionRow)
                .where(*where)
                .order_by(col(CanaryDecisionRow.id).desc())
                .limit(limit)
            ).all()
        return [_decision(r) for r in reversed(rows)]

    def status(self, logical: str) -> CanaryStatus:
        """State, step, weight, per-arm numbers since the step began, and decisions."""
        from llmops.serve.analysis import analyse

        row = self.row(logical)
        spec = CanarySpec(**row.spec)
        analysis, arms = analyse(self.serving, row, spec)
        policy = self.serving.traffic.get(logical)
        if spec.strategy == "thompson" and policy.candidates:
            from llmops.serve.bandit import bandit_analysis

            bandit = analysis["bandit"] = bandit_analysis(self.serving, row, spec, policy)
            # While the bandit runs, the pooled candidate arm and the first candidate's win rate
            # say nothing about any one candidate: each is tested on its own in "bandit", and
            # the canary as a whole fails only when every candidate is dropped.
            dropped = [f"{r}: {a['dropped']}" for r, a in bandit["arms"].items() if a["dropped"]]
            every = len(dropped) == len(bandit["arms"])
            analysis["quality"] = None
            analysis["error_rate"]["breach"] = analysis["latency"]["breach"] = False
            analysis["breach"] = every
            analysis["breach_reason"] = ("every candidate dropped: " + "; ".join(dropped)
                                         if every else None)  # fmt: skip
        return CanaryStatus(
            logical=logical,
            candidate=row.candidate,
            stable=row.stable,
            state=row.state,
            step=row.step,
            steps=list(spec.steps),
            weight=0.0 if policy.killed else policy.weight,
            spec=spec.model_dump(),
            reason=row.reason,
            started_at=as_utc(row.started_at),
            step_started_at=as_utc(row.step_started_at),
            arms=arms,
            analysis=analysis,
            decisions=self.decisions(logical, since=as_utc(row.started_at)),
        )

    def list(self) -> builtins.list[CanaryStatus]:
        """Every canary, live ones first."""
        with self.db.read() as session:
            names = session.scalars(select(col(CanaryRow.logical))).all()
        out = [self.status(n) for n in names]
        return sorted(out, key=lambda s: (s.state in FINAL_STATES, s.logical))

    # -- changes ---------------------------------------------------------------------------

    def start(self, logical: str, *, candidate: str | Sequence[str], **spec: Any) -> CanaryStatus:
        """Start rolling ``candidate`` out on ``logical`` (which needs a traffic policy): the
        candidate takes the first step's weight now; the controller takes it from there.
        Several candidates (with ``strategy="thompson"``) share that weight as a bandit until
        one wins. ``spec`` holds :class:`CanarySpec` fields (``steps``, ``min_requests`` ...).

        Raises:
            NotFoundError: No policy for ``logical``, or ``candidate`` names no model version.
            InputError: The spec is invalid or the candidate is the stable arm.
            ConflictError: A canary is already live on ``logical``.
        """
        given = [candidate] if isinstance(candidate, str) else list(candidate)
        policy = self.serving.traffic.get(logical)
        versions = [self._check_candidate(policy.stable, ref) for ref in given]
        if len(set(versions)) != len(versions) or not versions:
            raise InputError(f"the candidates {', '.join(versions)} repeat a version (or none)")
        version = versions[0]
        parsed = parse_spec({**spec, "candidates": versions if len(versions) > 1 else []})
        with self.db.write() as session:
            row = session.scalars(
                select(CanaryRow).where(col(CanaryRow.logical) == logical).with_for_update()
            ).first()
            if row is not None and row.state not in FINAL_STATES:
                raise ConflictError(
                    f"a canary of {row.candidate} is {row.state} on {logical!r}",
                    hint=f"finish it first: `llmops canary rollback {logical}` or `promote`",
                )
            if row is not None:
                session.delete(row)
                session.flush()
            now = utcnow()
            row_step = -1 if parsed.shadow_first else 0
            row = CanaryRow(
                logical=logical,
                candidate=version,
                stable=policy.stable,
                spec=parsed.model_dump(),
                state="running",
                step=row_step,
                step_started_at=now,
                started_at=now,
                started_by=self.actor,
                updated_at=now,
            )
            session.add(row)
            session.flush()
        # The split moves outside that transaction (it has its own, audited); should it fail
        # (a candidate equal to stable), the canary is rolled back with the reason.
        weight = 0.0 if parsed.shadow_first else parsed.steps[0]
        split: dict[str, Any] = {"candidate": version, "weight": weight}
        if parsed.judge_model is not None:
            split["shadow"] = parsed.judge_sample
        if parsed.candidates:
            share = 1 / len(parsed.candidates)
            split["candidates"] = [{"ref": v, "share": share} for v in parsed.candidates]
        try:
            self.serving.traffic.set(logical, **split, by_canary=True)
        except InputError as exc:
            self._finish(logical, "rolled_back", f"could not start: {exc.message}")
            raise
        how = (
            f"{version} in shadow until {parsed.shadow_first} judged pairs"
            if parsed.shadow_first
            else f"{version} at {weight:g}%"
        )
        if parsed.candidates:
            how = f"bandit (thompson) over {', '.join(parsed.candidates)} at {weight:g}%"
        self.record(logical, "start", how, step=row_step, weight=weight, event=True)
        return self.status(logical)

    def judge(self, logical: str, *, limit: int = 32) -> int:
        """Judge up to ``limit`` of the canary's pending shadow pairs now (the gateway's
        controller does this on its own); returns how many were judged.

        Raises:
            InputError: The canary has no judge.
        """
        from llmops.serve.controller import judge_canary

        row = self.row(logical)
        spec = CanarySpec(**row.spec)
        if spec.judge is None:
            raise InputError(
                f"the canary on {logical!r} has no judge",
                hint="start it with --judge-model MODEL_SPEC_JSON",
            )
        outcome = judge_canary(self.serving, row, spec, limit=limit)
        if outcome.unreachable and not outcome.judged:
            where = (spec.judge_model or {}).get("api_base") or spec.judge.name
            raise ServingError(
                f"the judge {where} did not answer for {outcome.unreachable} pairs:"
                f" {outcome.error}",
                hint="check the judge's server and --judge-model (its api_base and name);"
                " the pairs wait for the next pass",
            )
        return outcome.judged

    def _refuse_if_bandit(self, row: CanaryRow, action: str) -> None:
        spec = CanarySpec(**row.spec)
        if spec.strategy == "thompson" and self.serving.traffic.get(row.logical).candidates:
            raise InputError(
                f"the canary on {row.logical!r} is a bandit still choosing among"
                f" {', '.join(spec.candidates)}: there is no one candidate to {action}",
                hint="the controller names the winner (canary status shows each one's odds);"
                f" or end it: llmops canary rollback {row.logical}",
            )

    def _check_candidate(self, stable: str, ref: str) -> str:
        """The version ``ref`` names, if a canary may roll it out over ``stable``."""
        version = self.serving.models.get(ref).ref
        stable_name = stable.partition("@")[0]
        if version.partition("@")[0] != stable_name:
            raise InputError(
                f"the candidate {version} is not a version of {stable_name}, the stable arm's"
                " model",
                hint="a canary rolls out a new version of the same model; change the traffic"
                " policy by hand (llmops traffic set) to switch models",
            )
        if version == self.serving.traffic.resolve(stable):
            raise InputError(
                f"the candidate {version} is the stable arm {stable}", hint="name another version"
            )
        name, _, number = version.partition("@")
        if not any(
            b.model == name and b.version == int(number) for b in self.serving.backends.list()
        ):
            raise InputError(
                f"no backend serves {version}",
                hint="start or attach one first (llmops serve start / attach)",
            )
        return version

    def pause(self, logical: str, *, reason: str = "") -> CanaryStatus:
        """Stop advancing (the weight stays; rollback on a breach still happens)."""
        self._transition(logical, {"running"}, "paused", "pause", reason or "paused by hand")
        return self.status(logical)

    def resume(self, logical: str) -> CanaryStatus:
        """Let a paused canary advance again."""
        self._transition(logical, {"paused"}, "running", "resume", "resumed by hand")
        return self.status(logical)

    def rollback(self, logical: str, *, reason: str = "rolled back by hand") -> CanaryStatus:
        """Send everything to stable at once and end the canary (the evidence stays)."""
        from llmops.serve.controller import roll_back

        for _ in range(5):  # the emergency switch retries while other writers move the canary
            row = self.row(logical)
            if row.state in FINAL_STATES:
                raise InputError(f"the canary on {logical!r} is already {row.state}")
            if roll_back(self, row, reason, numbers={}, actor=self.actor):
                return self.status(logical)
        raise ConflictError(
            f"the canary on {logical!r} kept changing while rolling back",
            hint=f"run it again, or `llmops traffic kill {logical}`",
        )

    def advance(self, logical: str) -> CanaryStatus:
        """Go to the next step now (by hand), whatever the numbers say."""
        from llmops.serve.controller import step_to

        row = self.row(logical)
        if row.state in FINAL_STATES:
            raise InputError(f"the canary on {logical!r} is already {row.state}")
        self._refuse_if_bandit(row, "advance")
        spec = CanarySpec(**row.spec)
        if row.step + 1 >= len(spec.steps):
            raise InputError(
                f"the canary on {logical!r} is at its last step",
                hint=f"promote it: `llmops canary promote {logical}`",
            )
        if not step_to(
            self, row, row.step + 1, spec, "advanced by hand", numbers={}, actor=self.actor
        ):
            raise ConflictError(
                f"the canary on {logical!r} moved while advancing",
                hint=f"see `llmops canary status {logical}`",
            )
        return self.status(logical)

    def promote(self, logical: str) -> CanaryStatus:
        """Promote the candidate now (by hand) through the model's promotion policy."""
        from llmops.serve.controller import promote

        row = self.row(logical)
        self._refuse_if_bandit(row, "promote")
        if row.state in FINAL_STATES:
            raise InputError(f"the canary on {logical!r} is already {row.state}")
        promote(self, row, "promoted by hand", numbers={}, actor=self.actor)
        status = self.status(logical)
        if status.state not in ("promoted", "awaiting_approval"):
            raise ConflictError(
                f"the canary on {logical!r} changed while promoting",
                hint=f"see `llmops canary status {logical}`",
            )
        return status

    # -- writing helpers (the controller uses these too) -------------------------------------

    def _transition(
        self, logical: str, allowed: set[str], state: str, action: str, reason: str
    ) -> None:
        with self.db.write() as session:
            row = self._locked(session, logical)
            if row.state not in allowed:
                raise InputError(
                    f"the canary on {logical!r} is {row.state}, not {' or '.join(sorted(allowed))}"
                )
            row.state, row.updated_at, row.revision = state, utcnow(), row.revision + 1
            session.add(row)
            step = row.step
        weight = self.serving.traffic.get(logical).weight
        self.record(logical, action, reason, step=step, weight=weight)

    def _locked(self, session: Session, logical: str) -> CanaryRow:
        row = session.scalars(
            select(CanaryRow).where(col(CanaryRow.logical) == logical).with_for_update()
        ).first()
        if row is None:
            raise NotFoundError(f"no canary on logical model {logical!r}")
        return row

    def _finish(self, logical: str, state: str, reason: str) -> None:
        with self.db.write() as session:
            row = self._locked(session, logical)
            row.state, row.reason, row.updated_at = state, reason, utcnow()
            row.revision += 1
            session.add(row)

    def record(
        self,
        logical: str,
        action: str,
        reason: str,
        *,
        step: int,
        weight: float,
        numbers: dict[str, Any] | None = None,
        actor: str | None = None,
        event: bool = False,
    ) -> None:
        """Append a decision (audited; ``event``: also a registry event)."""
        actor = actor or self.actor
        with self.db.write() as session:
            session.add(
                CanaryDecisionRow(
                    logical=logical,
                    action=action,
                    reason=reason[:2000],
                    step=step,
                    weight=weight,
                    numbers=numbers or {},
                    actor=actor,
                )
            )
            record_event(
                session,
                actor=actor,
                action=f"canary.{action}",
                entity_type="canary",
                entity_key=logical,
                before=None,
                after={"step": step, "weight": weight, "reason": reason[:500]},
            )
            if event:
                row = session.get(CanaryRow, logical)
                model = (row.candidate if row else logical).partition("@")[0]
                emit(
                    session,
                    type=f"canary.{action}",
                    model=model,
                    payload={
                        "logical": logical,
                        "step": step,
                        "weight": weight,
                        "reason": reason[:500],
                        "candidate": row.candidate if row else None,
                    },
                )
