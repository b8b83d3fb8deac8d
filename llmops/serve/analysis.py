"""Canary analysis: the numbers of a canary's current step, per arm on its own traffic
(failed-over requests count on the candidate only), and the decision they make.

The error-rate increase, the share of candidate requests slower than the stable p95 times
(1 + ``max_p95_increase``), the judged win rate of mirrored requests (with a judge) and the
feedback drop (with ``max_feedback_drop``) are each tested with an always-valid confidence
sequence (:mod:`llmops.serve.sequential`) at ``alpha`` divided by the number of tests (a union
bound), so the canary may be looked at every few seconds. A rollback needs the whole interval
past its threshold (a clear breach); advancing needs ``min_requests`` candidate requests,
``min_seconds`` on the step, ``min_judged`` judged pairs with a judge, and no estimate past a
threshold. The win rate is over the whole canary (answer quality does not depend on the
weight); the other numbers are the current step's.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from llmops.db.models import CanaryRow
from llmops.db.timestamps import as_utc, utcnow
from llmops.serve.canary import CanarySpec
from llmops.serve.judge import pair_counts
from llmops.serve.rollup import arm_stats, arm_window
from llmops.serve.sequential import Interval, difference, rate_interval

if TYPE_CHECKING:
    from llmops.serve.records import ArmStats
    from llmops.serve.serving import Serving

__all__ = ["SLOW_SHARE", "analyse", "breach", "decide", "win_rate"]


SLOW_SHARE = 0.05
"""Under "no worse than stable", at most this share of candidate requests is slower than the
stable arm's p95 (times 1 + max_p95_increase)."""


_QUALITY_WORDS = {
    "better": "better than stable",
    "worse": "worse than stable",
    "no clear difference": "no clear difference from stable",
    "not judged yet": "none judged yet",
}


def _interval(i: Any) -> dict[str, Any]:
    return {"estimate": i.estimate, "low": round(i.low, 6), "high": round(i.high, 6)}


def analyse(
    serving: Serving, row: CanaryRow, spec: CanarySpec
) -> tuple[dict[str, Any], dict[str, ArmStats]]:
    """The numbers of the current step: per arm, the error-rate difference and the slow share
    with their confidence sequences, whether each is breached, and whether the step is ready."""
    since = as_utc(row.step_started_at)
    per_arm = arm_window(serving.db, row.logical, since=since)
    arms = {arm: w.stats for arm, w in per_arm.items()}
    shadow_phase = row.step < 0
    # Before the live steps the candidate answers mirrored requests only: judge those.
    cand_window = per_arm.get("shadow" if shadow_phase else "candidate")
    cand = cand_window.stats if cand_window else None
    stable = arms.get("stable")
    alpha = spec.alpha / spec.tests
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
    errors = difference(c, s, alpha=alpha)
    error_breach = errors.low > spec.max_error_rate_increase
    latency: dict[str, Any] = {"stable_p95_ms": stable.p95_ms if stable else None}
    latency_breach = False
    if (
        stable
        and stable.p95_ms is not None
        and stable.requests >= spec.min_stable_requests
        and cand_window
    ):
        threshold = max(stable.p95_ms * (1 + spec.max_p95_increase),
                        stable.p95_ms + spec.min_p95_increase_ms)  # fmt: skip
        slow = cand_window.slower_than(threshold)
        share = rate_interval(slow, cand_window.answered, alpha=alpha)
        latency_breach = share.low > SLOW_SHARE
        latency.update(threshold_ms=round(threshold, 3), slow_share=_interval(share))
    elapsed = (utcnow() - since).total_seconds()
    requests = cand.requests if cand else 0
    quality = _quality(serving, row, spec, alpha)
    feedback = _feedback(spec, cand, stable, alpha)
    if shadow_phase:
        ready = quality is not None and quality["judged"] >= spec.shadow_first
    else:
        ready = requests >= spec.min_requests and elapsed >= spec.min_seconds
        ready = ready and (quality is None or quality["judged"] >= spec.min_judged)
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
        "quality": quality,
        "feedback": feedback,
        "ready": ready,
        "phase": "shadow" if shadow_phase else "live",
        "baseline": baseline if stable and stable.requests >= spec.min_stable_requests else None,
        "method": (
            f"always-valid confidence sequences (normal mixture), alpha {spec.alpha} over"
            f" {spec.tests} tests"
        ),
    }
    why = breach(spec, analysis)
    analysis["breach"] = why is not None  # any test: errors, latency, quality or feedback
    analysis["breach_reason"] = why
    return analysis, arms


def win_rate(wins: int, ties: int, n: int, *, alpha: float) -> Interval:
    """The candidate's judged win rate (a tie is half a win) with its confidence sequence."""
    return rate_interval(wins + 0.5 * ties, n, alpha=alpha, tune_n=100)


def _quality(
    serving: Serving, row: CanaryRow, spec: CanarySpec, alpha: float
) -> dict[str, Any] | None:
    """The judged win rate of the candidate over the whole canary (ties count half)."""
    if spec.judge_model is None:
        return None
    counts = pair_counts(serving, row.logical, candidate=row.candidate,
                         since=as_utc(row.started_at))  # fmt: skip
    n = counts.judged
    win = win_rate(counts.wins, counts.ties, n, alpha=alpha)
    if win.estimate is None:
        verdict = "not judged yet"
    elif win.low > 0.5:
        verdict = "better"
    elif win.high < 0.5:
        verdict = "worse"
    else:
        verdict = "no clear difference"
    return {
        "judged": n,
        "wins": counts.wins,
        "ties": counts.ties,
        "losses": counts.losses,
        "pending": counts.pending,
        "no_verdict": counts.no_verdict,
        "win_rate": _interval(win),
        "position_consistency": round(counts.consistent / n, 4) if n else None,
        "min_win_rate": spec.min_win_rate,
        "verdict": verdict,
        "breach": n > 0 and win.high < spec.min_win_rate,
    }


def _feedback(
    spec: CanarySpec, cand: ArmStats | None, stable: ArmStats | None, alpha: float
) -> dict[str, Any]:
    """Explicit feedback per arm on the step; tested only when the spec sets a maximum drop."""
    out: dict[str, Any] = {
        arm: None if s is None else {"votes": s.feedback, "mean": s.feedback_mean}
        for arm, s in (("candidate", cand), ("stable", stable))
    }
    out["max_drop"] = spec.max_feedback_drop
    out["breach"] = False
    if spec.max_feedback_drop is not None and cand and stable and cand.feedback and stable.feedback:
        drop = difference(
            (stable.feedback * (stable.feedback_mean or 0.0), stable.feedback),
            (cand.feedback * (cand.feedback_mean or 0.0), cand.feedback),
            alpha=alpha,
            tune_n=50,
        )
        out["drop"] = _interval(drop)
        out["breach"] = drop.low > spec.max_feedback_drop
    return out


def breach(spec: CanarySpec, analysis: dict[str, Any]) -> str | None:
    """Why the candidate is clearly worse (the whole interval past a threshold), if it is."""
    err, lat = analysis["error_rate"], analysis["latency"]
    quality, feedback = analysis["quality"], analysis["feedback"]
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
    if quality and quality["breach"]:
        w = quality["win_rate"]
        return (
            f"answers judged worse: win rate {w['estimate']:.2f} (at most {w['high']:.2f}) over"
            f" {quality['judged']} pairs, below the {spec.min_win_rate:g} allowed"
        )
    if feedback["breach"]:
        return (
            f"feedback: the candidate's mean score is at least {feedback['drop']['low']:.2f}"
            f" below stable's (more than {spec.max_feedback_drop:g} allowed)"
        )
    return None


def _wait(row: CanaryRow, spec: CanarySpec, analysis: dict[str, Any]) -> str | None:
    """Why the step cannot pass yet, if it cannot: no baseline, an estimate above a threshold
    (not yet a clear breach), or too few requests or seconds."""
    err, lat, quality = analysis["error_rate"], analysis["latency"], analysis["quality"]
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
    win = quality["win_rate"]["estimate"] if quality else None
    if win is not None and win < spec.min_win_rate:
        return (
            f"win rate estimated at {win:.2f} (below {spec.min_win_rate:g}): holding until it"
            " is clear either way"
        )
    if not analysis["ready"]:
        judged = f", {quality['judged']}/{spec.min_judged} judged pairs" if quality else ""
        return (
            f"step {row.step + 1}/{len(spec.steps)}: {analysis['requests']['candidate']}/"
            f"{spec.min_requests} candidate requests,"
            f" {analysis['elapsed_s']:.0f}/{spec.min_seconds:g} s{judged}"
        )
    return None


def decide(row: CanaryRow, spec: CanarySpec, analysis: dict[str, Any]) -> tuple[str, str]:
    """``(action, reason)``: ``rollback``, ``promote``, ``advance`` or ``hold``. A breach rolls
    back in any live state; only a running canary advances or promotes."""
    why = analysis["breach_reason"]
    if why:
        return "rollback", why
    if row.state != "running":
        return "hold", row.state
    if row.step < 0:
        return _after_shadow(spec, analysis)
    wait = _wait(row, spec, analysis)
    if wait:
        return "hold", wait
    quality = analysis["quality"]
    n = analysis["requests"]["candidate"]
    judged = f"; answers judged: {_QUALITY_WORDS[quality['verdict']]}" if quality else ""
    if row.step + 1 >= len(spec.steps):
        return "promote", f"last step passed with {n} requests{judged}"
    return "advance", f"step {row.step + 1} passed ({n} requests, no breach)"


def _after_shadow(spec: CanarySpec, analysis: dict[str, Any]) -> tuple[str, str]:
    """Shadow first: hold until the judged pairs are in, then start the live steps unless the
    candidate lost them."""
    quality = analysis["quality"]
    judged = quality["judged"] if quality else 0
    if not analysis["ready"]:
        return "hold", f"shadow: {judged}/{spec.shadow_first} judged pairs"
    w = quality["win_rate"]
    if w["estimate"] < spec.min_win_rate:
        return "rollback", (
            f"lost in shadow: win rate {w['estimate']:.2f} over {judged} judged pairs, below"
            f" the {spec.min_win_rate:g} needed for the live steps"
        )
    return "advance", f"shadow passed: win rate {w['estimate']:.2f} over {judged} judged pairs"
