"""The canary controller: a reconcile loop (in every gateway replica; one leader per logical
model through a lease row in the registry database) that reads a canary's spec and its arms'
numbers on the current step and takes one idempotent step: advance, hold, roll back or promote.

The numbers and the decision they make are :mod:`llmops.serve.analysis`'s; this module acts
on them (each action a compare-and-set on the canary's revision, so racing replicas or people
change it once) and, for canaries with a judge, judges their shadow pairs beside the ticks.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import select, update
from sqlmodel import col

from llmops.db.models import CanaryRow, ServeLease
from llmops.db.timestamps import as_utc, utcnow
from llmops.serve.analysis import analyse, decide
from llmops.serve.canary import FINAL_STATES, CanarySpec
from llmops.serve.judge import JudgeOutcome, judge_pairs

if TYPE_CHECKING:
    from llmops.serve.canary import Canaries
    from llmops.serve.records import TrafficPolicy
    from llmops.serve.serving import Serving

__all__ = ["Controller", "acquire_lease", "judge_canary", "reconcile"]

log = logging.getLogger("llmops.gateway")


def compare_and_set(canaries: Canaries, row: CanaryRow, *where: Any, **values: Any) -> bool:
    """Update the canary with ``values`` only if it is still at ``row``'s revision (and
    ``where`` holds): of two racing changes exactly one wins. True when this one did."""
    with canaries.db.write() as session:
        result: Any = session.execute(
            update(CanaryRow)
            .where(
                col(CanaryRow.logical) == row.logical,
                col(CanaryRow.revision) == row.revision,
                *where,
            )
            .values(updated_at=utcnow(), revision=row.revision + 1, **values)
        )
        return bool(result.rowcount)


def step_to(
    canaries: Canaries,
    row: CanaryRow,
    step: int,
    spec: CanarySpec,
    reason: str,
    *,
    numbers: dict[str, Any],
    actor: str,
) -> bool:
    """Move to ``step`` if the canary is still where ``row`` saw it (compare-and-set)."""
    if not compare_and_set(canaries, row, step=step, step_started_at=utcnow()):
        return False
    weight = spec.steps[step]
    try:
        canaries.serving.traffic.set(row.logical, weight=weight, by_canary=True)
    except Exception:  # the split did not move: neither does the step
        with canaries.db.write() as session:
            session.execute(
                update(CanaryRow)
                .where(col(CanaryRow.logical) == row.logical)
                .values(step=row.step, step_started_at=row.step_started_at)
            )
        raise
    canaries.record(
        row.logical,
        "advance",
        reason,
        step=step,
        weight=weight,
        numbers=numbers,
        actor=actor,
        event=True,
    )
    return True


def claim(canaries: Canaries, row: CanaryRow, state: str) -> bool:
    """Move the canary to ``state`` only if it is still where ``row`` saw it and not final
    (of a rollback and a promotion racing, exactly one wins)."""
    return compare_and_set(
        canaries, row, col(CanaryRow.state).not_in(sorted(FINAL_STATES)), state=state
    )


def roll_back(
    canaries: Canaries,
    row: CanaryRow,
    reason: str,
    *,
    numbers: dict[str, Any],
    actor: str,
    kill: bool = True,
) -> bool:
    """Candidate weight 0 at once (the kill switch), then the canary ends as rolled back;
    False when it had already moved on (another decision won)."""
    if not claim(canaries, row, "rolled_back"):
        return False
    if kill:
        canaries.serving.traffic.kill(row.logical, reason=f"canary rollback: {reason}")
    if canaries.serving.traffic.get(row.logical).candidates:  # a bandit's split ends with it
        canaries.serving.traffic.set(row.logical, candidates=None, by_canary=True)
    canaries._finish(row.logical, "rolled_back", reason)
    _withdraw_request(canaries, row, reason)
    canaries.record(
        row.logical,
        "rollback",
        reason,
        step=row.step,
        weight=0.0,
        numbers=numbers,
        actor=actor,
        event=True,
    )
    return True


def _withdraw_request(canaries: Canaries, row: CanaryRow, reason: str) -> None:
    """A rolled-back candidate's open promotion request is rejected, so that a later approval
    cannot promote it."""
    from llmops.errors import LLMOpsError

    alias = row.stable.partition("@")[2]
    models = canaries.serving.models
    try:
        version = models.get(row.candidate)
        if alias and models.pending(version, alias) is not None:
            models.reject(row.candidate, alias, comment=f"canary rolled back: {reason}"[:500])
    except LLMOpsError as exc:  # the rollback stands; the request is left for a person
        log.warning("canary %s: promotion request not withdrawn: %s", row.logical, exc)


def promote(
    canaries: Canaries, row: CanaryRow, reason: str, *, numbers: dict[str, Any], actor: str
) -> bool:
    """Promote the candidate: when the stable arm is an alias (``name@production``) the alias
    moves to it (through the model's policy when one guards it; it may wait for approvals);
    a pinned stable arm (``name@7``) is replaced. Then the split ends on the new stable.
    False when it waits for approvals, or another decision won."""
    if not claim(canaries, row, "promoting"):
        return False
    serving = canaries.serving
    name, _, label = row.stable.partition("@")
    candidate_name = row.candidate.partition("@")[0]
    if label and not label.isdigit() and label != "latest" and name == candidate_name:
        policy = serving.models.policy(name)
        if policy is not None and label in policy.guards:
            verdict = serving.models.promote(row.candidate, label)
            if not verdict.promoted:
                why = "; ".join(verdict.unmet) or "the policy did not move the alias"
                with canaries.db.write() as session:
                    current = canaries._locked(session, row.logical)
                    current.state, current.reason = "awaiting_approval", why[:2000]
                    session.add(current)
                if row.state not in ("awaiting_approval", "promoting"):
                    canaries.record(
                        row.logical,
                        "hold",
                        f"waiting for promotion: {why}",
                        step=row.step,
                        weight=serving.traffic.get(row.logical).weight,
                        numbers=numbers,
                        actor=actor,
                    )
                return False
        else:
            serving.models.artifacts.alias(row.candidate, label)
        serving.traffic.set(row.logical, candidate=None)
    else:
        serving.traffic.set(row.logical, stable=row.candidate, candidate=None)
    canaries._finish(row.logical, "promoted", reason)
    canaries.record(
        row.logical,
        "promote",
        reason,
        step=row.step,
        weight=100.0,
        numbers=numbers,
        actor=actor,
        event=True,
    )
    return True


def judge_canary(
    serving: Serving, row: CanaryRow, spec: CanarySpec, *, limit: int = 32
) -> JudgeOutcome:
    """Judge up to ``limit`` of the canary's pending shadow pairs."""
    model = spec.judge
    if model is None:
        return JudgeOutcome(0)
    return judge_pairs(
        serving,
        row.logical,
        candidates=sorted({row.candidate, *spec.candidates}),
        since=as_utc(row.started_at),
        model=model,
        rubric=spec.judge_rubric,
        limit=limit,
        method=spec.judge_method,
    )


def _taken_over(canaries: Canaries, row: CanaryRow, policy: TrafficPolicy, actor: str) -> bool:
    """A person killed the split or changed its arms by hand: the canary ends (rolled back),
    the split stays as they set it. True when it did."""
    if policy.killed:
        why = "the traffic policy was killed"
    elif (policy.candidate is not None and canaries.serving.traffic.resolve(policy.candidate)
            != row.candidate) or policy.stable != row.stable:  # fmt: skip
        # What the canary measures is no longer its candidate.
        why = (
            f"the traffic policy was changed by hand (candidate {policy.candidate}, stable"
            f" {policy.stable})"
        )
    else:
        return False
    roll_back(canaries, row, why, numbers={}, actor=actor, kill=False)
    return True


def reconcile(canaries: Canaries, logical: str, *, actor: str) -> str:
    """One controller step for ``logical``: read, decide, act once. Returns the action."""
    row = canaries.row(logical)
    if row.state in FINAL_STATES:
        return "none"
    spec = CanarySpec(**row.spec)
    policy = canaries.serving.traffic.get(logical)
    if _taken_over(canaries, row, policy, actor):
        return "rollback"
    if spec.strategy == "thompson" and policy.candidates:
        from llmops.serve.bandit import bandit_step

        return bandit_step(canaries, row, spec, policy, actor=actor)
    analysis, _ = analyse(canaries.serving, row, spec)
    if row.state in ("awaiting_approval", "promoting"):
        why = analysis["breach_reason"]  # waiting for a person never shields a breach
        if why:
            roll_back(canaries, row, why, numbers=analysis, actor=actor)
            return "rollback"
        promoted = promote(canaries, row, "promoted once approved", numbers=analysis,
                           actor=actor)  # fmt: skip
        return "promote" if promoted else "hold"
    action, reason = decide(row, spec, analysis)
    if action == "rollback":
        roll_back(canaries, row, reason, numbers=analysis, actor=actor)
    elif action == "advance":
        step_to(canaries, row, row.step + 1, spec, reason, numbers=analysis, actor=actor)
    elif action == "promote":
        promote(canaries, row, reason, numbers=analysis, actor=actor)
    else:
        last = canaries.decisions(logical, limit=1)
        if not last or last[0].action != "hold" or not _same_hold(last[0].reason, reason):
            canaries.record(
                logical,
                "hold",
                reason,
                step=row.step,
                weight=canaries.serving.traffic.get(logical).weight,
                numbers=analysis,
                actor=actor,
            )
    return action


def _same_hold(previous: str, reason: str) -> bool:
    """Holds are recorded once per step and kind (not on every tick, nor for every new
    estimate): the text before the first colon, numbers left out, names the kind."""

    def kind(text: str) -> str:
        return re.sub(r"[\d.%]+", "#", text.split(":", maxsplit=1)[0])

    return kind(previous) == kind(reason)


def acquire_lease(serving: Serving, name: str, holder: str, *, ttl_s: float) -> bool:
    """Hold (or renew) lease ``name`` for ``ttl_s`` seconds; False while another holds it."""
    now = utcnow()
    with serving.db.write() as session:
        lease = session.get(ServeLease, name)
        if lease is not None and lease.holder != holder and as_utc(lease.expires_at) > now:
            return False
        if lease is None:
            lease = ServeLease(name=name, holder=holder, expires_at=now)
        lease.holder, lease.expires_at = holder, now + timedelta(seconds=ttl_s)
        session.add(lease)
    return True


class Controller:
    """Runs :func:`reconcile` for every live canary this replica leads (``tick`` every few
    seconds; a missed tick changes nothing)."""

    def __init__(self, serving: Serving, *, replica: str, interval_s: float = 2.0) -> None:
        self.serving = serving
        self.replica = replica
        self.interval_s = interval_s

    def judge(self, *, limit: int = 8) -> dict[str, int]:
        """Judge pending shadow pairs of the live canaries with a judge that this replica
        leads: ``{logical: pairs judged}`` (the gateway runs it beside :meth:`tick`, so a slow
        judge never delays a rollback). Passes are small (``limit`` pairs each), so verdicts
        count as they come instead of after a long batch."""
        with self.serving.db.read() as session:
            rows = session.scalars(
                select(CanaryRow).where(col(CanaryRow.state).not_in(sorted(FINAL_STATES)))
            ).all()
            leases = {
                lease.name: lease
                for lease in session.scalars(
                    select(ServeLease).where(col(ServeLease.holder) == self.replica)
                ).all()
            }
        out: dict[str, int] = {}
        for row in rows:
            spec = CanarySpec(**row.spec)
            lease = leases.get(f"canary:{row.logical}")
            if spec.judge is None or lease is None or as_utc(lease.expires_at) <= utcnow():
                continue
            try:
                outcome = judge_canary(self.serving, row, spec, limit=limit)
                out[row.logical] = outcome.judged
                if outcome.unreachable:
                    where = (spec.judge_model or {}).get("api_base") or "(local)"
                    log.warning("canary %s: the judge %s did not answer for %d pairs: %s",
                                row.logical, where, outcome.unreachable, outcome.error)  # fmt: skip
            except Exception as exc:  # a broken judge never stops the gateway
                log.error("canary %s: judging failed: %s", row.logical, exc)
                out[row.logical] = -1
        return out

    def tick(self) -> dict[str, str]:
        """One pass: ``{logical: action}`` for the canaries this replica led."""
        canaries = self.serving.canaries
        with self.serving.db.read() as session:
            live = session.scalars(
                select(col(CanaryRow.logical)).where(
                    col(CanaryRow.state).not_in(sorted(FINAL_STATES))
                )
            ).all()
        out: dict[str, str] = {}
        for logical in live:
            if not acquire_lease(
                self.serving, f"canary:{logical}", self.replica, ttl_s=3 * self.interval_s
            ):
                continue
            try:
                out[logical] = reconcile(canaries, logical, actor=f"controller:{self.replica}")
            except Exception as exc:  # one canary's trouble never stops the others
                log.error("canary %s: reconcile failed: %s", logical, exc)
                out[logical] = "error"
        return out
