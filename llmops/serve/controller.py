"""The canary controller: a reconcile loop (in every gateway replica; one leader per logical
model through a lease row in the registry database) that reads a canary's spec and its arms'
numbers on the current step and takes one idempotent step: advance, hold, roll back or promote.

Analysis is per arm on its own traffic (failed-over requests count on the candidate only), with
always-valid confidence sequences (:mod:`llmops.serve.sequential`), so the canary may be looked at
every few seconds: the error-rate increase and the share of candidate requests slower than the
stable p95 times (1 + ``max_p95_increase``) are each tested at ``alpha / 2``, and a rollback
needs the whole interval past the threshold (a clear breach). Advancing needs ``min_requests``
candidate requests and ``min_seconds`` on the step, and no breach.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, not_, select, update
from sqlmodel import col

from llmops.db.models import CanaryRow, ServeLease, ServeRequest
from llmops.db.timestamps import as_utc, utcnow
from llmops.serve.canary import FINAL_STATES, CanarySpec
from llmops.serve.metrics import arm_stats
from llmops.serve.sequential import difference, rate_interval

if TYPE_CHECKING:
    from llmops.serve.canary import Canaries
    from llmops.serve.records import ArmStats
    from llmops.serve.serving import Serving

__all__ = ["Controller", "acquire_lease", "analyse", "decide", "reconcile"]

log = logging.getLogger("llmops.gateway")

SLOW_SHARE = 0.05
"""Under "no worse than stable", at most this share of candidate requests is slower than the
stable arm's p95 (times 1 + max_p95_increase)."""


def _interval(i: Any) -> dict[str, Any]:
    return {"estimate": i.estimate, "low": round(i.low, 6), "high": round(i.high, 6)}


def analyse(
    serving: Serving, row: CanaryRow, spec: CanarySpec
) -> tuple[dict[str, Any], dict[str, ArmStats]]:
    """The numbers of the current step: per arm, the error-rate difference and the slow share
    with their confidence sequences, whether each is breached, and whether the step is ready."""
    since = as_utc(row.step_started_at)
    arms = arm_stats(serving.db, row.logical, since=since)
    cand = arms.get("candidate")
    stable = arms.get("stable")
    baseline = "this step"
    if stable is None or stable.requests < spec.min_stable_requests:
        # At high weights (100%: none) the stable arm has too little traffic of its own on the
        # step: compare with its traffic over the whole canary, else the hour before it.
        started = as_utc(row.started_at)
        windows = (
            ("the whole canary", started, None),
            ("the hour before the canary", started - timedelta(hours=1), started),
        )
        for name, begin, end in windows:
            earlier = arm_stats(serving.db, row.logical, since=begin, until=end).get("stable")
            if earlier is not None and earlier.requests >= spec.min_stable_requests:
                stable, baseline = earlier, name
                break
    c = (cand.errors, cand.requests) if cand else (0, 0)
    s = (stable.errors, stable.requests) if stable else (0, 0)
    errors = difference(c, s, alpha=spec.alpha / 2)
    error_breach = errors.low > spec.max_error_rate_increase
    latency: dict[str, Any] = {"stable_p95_ms": stable.p95_ms if stable else None}
    latency_breach = False
    if (
        stable
        and stable.p95_ms is not None
        and stable.requests >= spec.min_stable_requests
        and cand
    ):
        threshold = max(stable.p95_ms * (1 + spec.max_p95_increase),
                        stable.p95_ms + spec.min_p95_increase_ms)  # fmt: skip
        with serving.db.read() as session:
            slow = session.scalar(
                select(func.count())
                .select_from(ServeRequest)
                .where(
                    col(ServeRequest.logical) == row.logical,
                    col(ServeRequest.arm) == "candidate",
                    col(ServeRequest.at) >= since,
                    col(ServeRequest.latency_ms) > threshold,
                    not_(col(ServeRequest.error)),
                )
            )
        ok = cand.requests - cand.errors
        share = rate_interval(int(slow or 0), ok, alpha=spec.alpha / 2)
        latency_breach = share.low > SLOW_SHARE
        latency.update(threshold_ms=round(threshold, 3), slow_share=_interval(share))
    elapsed = (utcnow() - since).total_seconds()
    requests = cand.requests if cand else 0
    analysis = {
        "step": row.step,
        "elapsed_s": round(elapsed, 1),
        "requests": {"candidate": requests, "stable": s[1]},
        "error_rate": {
            "candidate": cand.error_rate if cand else None,
            "stable": stable.error_rate if stable else None,
            "difference": _interval(errors),
            "max_increase": spec.max_error_rate_increase,
            "breach": error_breach,
        },
        "latency": {**latency, "max_p95_increase": spec.max_p95_increase, "breach": latency_breach},
        "ready": requests >= spec.min_requests and elapsed >= spec.min_seconds,
        "baseline": baseline if stable and stable.requests >= spec.min_stable_requests else None,
        "method": f"always-valid confidence sequences (normal mixture), alpha {spec.alpha}",
    }
    return analysis, arms


def _breach(spec: CanarySpec, analysis: dict[str, Any]) -> str | None:
    """Why the candidate is clearly worse (the whole interval past a threshold), if it is."""
    err, lat = analysis["error_rate"], analysis["latency"]
    if err["breach"]:
        return (
            f"error rate {err['candidate']:.2%} vs stable {err['stable'] or 0:.2%}: the increase"
            f" is at least {err['difference']['low']:.2%}"
            f" (> {spec.max_error_rate_increase:.2%} allowed)"
        )
    if lat["breach"]:
        return (
            f"latency: at least {lat['slow_share']['low']:.1%} of candidate requests are slower"
            f" than {lat['threshold_ms']:.1f} ms (stable p95 x {1 + spec.max_p95_increase:g};"
            f" at most {SLOW_SHARE:.0%} allowed)"
        )
    return None


def _wait(row: CanaryRow, spec: CanarySpec, analysis: dict[str, Any]) -> str | None:
    """Why the step cannot pass yet, if it cannot: no baseline, an estimate above a threshold
    (not yet a clear breach), or too few requests or seconds."""
    err, lat = analysis["error_rate"], analysis["latency"]
    estimate = err["difference"]["estimate"]
    share = lat.get("slow_share")
    if analysis["baseline"] is None:
        return (
            f"no stable baseline: fewer than {spec.min_stable_requests} stable requests to"
            " compare with (this step, the canary, or the hour before it)"
        )
    if estimate is not None and estimate > spec.max_error_rate_increase:
        return (
            f"error-rate increase estimated at {estimate:.2%} (above"
            f" {spec.max_error_rate_increase:.2%}): holding until it is clear either way"
        )
    if share and share["estimate"] is not None and share["estimate"] > 2 * SLOW_SHARE:
        return (
            f"latency: {share['estimate']:.1%} of candidate requests slower than"
            f" {lat['threshold_ms']:.1f} ms: holding until it is clear either way"
        )
    if not analysis["ready"]:
        return (
            f"step {row.step + 1}/{len(spec.steps)}: {analysis['requests']['candidate']}/"
            f"{spec.min_requests} candidate requests,"
            f" {analysis['elapsed_s']:.0f}/{spec.min_seconds:g} s"
        )
    return None


def decide(row: CanaryRow, spec: CanarySpec, analysis: dict[str, Any]) -> tuple[str, str]:
    """``(action, reason)``: ``rollback``, ``promote``, ``advance`` or ``hold``. A breach rolls
    back in any live state; only a running canary advances or promotes."""
    breach = _breach(spec, analysis)
    if breach:
        return "rollback", breach
    if row.state != "running":
        return "hold", row.state
    wait = _wait(row, spec, analysis)
    if wait:
        return "hold", wait
    n = analysis["requests"]["candidate"]
    if row.step + 1 >= len(spec.steps):
        return "promote", f"last step passed with {n} requests"
    return "advance", f"step {row.step + 1} passed ({n} requests, no breach)"


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
    with canaries.db.write() as session:
        result: Any = session.execute(
            update(CanaryRow)
            .where(col(CanaryRow.logical) == row.logical, col(CanaryRow.revision) == row.revision)
            .values(
                step=step, step_started_at=utcnow(), updated_at=utcnow(), revision=row.revision + 1
            )
        )
        moved = result.rowcount
    if not moved:
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
    with canaries.db.write() as session:
        result: Any = session.execute(
            update(CanaryRow)
            .where(
                col(CanaryRow.logical) == row.logical,
                col(CanaryRow.revision) == row.revision,
                col(CanaryRow.state).not_in(sorted(FINAL_STATES)),
            )
            .values(state=state, updated_at=utcnow(), revision=row.revision + 1)
        )
        return bool(result.rowcount)


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


def reconcile(canaries: Canaries, logical: str, *, actor: str) -> str:
    """One controller step for ``logical``: read, decide, act once. Returns the action."""
    row = canaries.row(logical)
    if row.state in FINAL_STATES:
        return "none"
    spec = CanarySpec(**row.spec)
    policy = canaries.serving.traffic.get(logical)
    if policy.killed:  # a person pulled the kill switch: the canary is over
        roll_back(canaries, row, "the traffic policy was killed", numbers={}, actor=actor,
                  kill=False)  # fmt: skip
        return "rollback"
    if (policy.candidate is not None and canaries.serving.traffic.resolve(policy.candidate)
            != row.candidate) or policy.stable != row.stable:  # fmt: skip
        # Someone changed the arms by hand: what the canary measures is no longer its
        # candidate. It stops; the split stays as they set it.
        roll_back(canaries, row, f"the traffic policy was changed by hand (candidate"
                  f" {policy.candidate}, stable {policy.stable})", numbers={}, actor=actor,
                  kill=False)  # fmt: skip
        return "rollback"
    analysis, _ = analyse(canaries.serving, row, spec)
    if row.state in ("awaiting_approval", "promoting"):
        breach = _breach(spec, analysis)  # waiting for a person never shields a breach
        if breach:
            roll_back(canaries, row, breach, numbers=analysis, actor=actor)
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
    """Holds are recorded once per step and state (not on every tick)."""
    return previous.split(":", maxsplit=1)[0] == reason.split(":", maxsplit=1)[0]


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
