"""A bandit over two or more candidates (``strategy: thompson``): they share the first step's
candidate weight, each at least ``floor`` of it, the rest by Thompson sampling, the share of
each being its probability of being the best under a Beta posterior of its reward: judged wins
against the stable arm on mirrored requests (a tie is half a win), or explicit feedback scores.

Each candidate is judged on its own traffic: a clear error-rate breach against the stable arm,
or a win rate surely below ``min_win_rate``, drops it (share 0). When one candidate is at least
``win_probability`` likely to be the best and every live candidate has ``min_judged`` rewards
(or only one is left), it wins: the bandit ends, the winner is the canary's one candidate, and
it goes on through the steps as any canary does (its numbers from then on), to promotion.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from llmops.db.models import CanaryRow
from llmops.db.timestamps import as_utc, utcnow
from llmops.serve.analysis import win_rate
from llmops.serve.judge import pair_counts
from llmops.serve.rollup import arm_window, feedback_votes
from llmops.serve.sequential import difference

if TYPE_CHECKING:
    from llmops.serve.canary import Canaries, CanarySpec
    from llmops.serve.records import TrafficPolicy
    from llmops.serve.serving import Serving

__all__ = ["bandit_analysis", "bandit_step", "p_best"]

DRAWS = 4000
"""Posterior draws per evaluation for the probability of being the best."""

_MIN_SHARE_CHANGE = 0.02
"""Shares move (a new policy revision) only by at least this much."""


def p_best(rewards: dict[str, tuple[float, float]], *, rng: random.Random) -> dict[str, float]:
    """Each arm's probability of the highest mean under Beta(1 + successes, 1 + failures)
    posteriors, from ``rewards`` (arm -> (successes, failures))."""
    arms = sorted(rewards)
    wins = dict.fromkeys(arms, 0)
    for _ in range(DRAWS):
        draws = {a: rng.betavariate(1 + rewards[a][0], 1 + rewards[a][1]) for a in arms}
        wins[max(arms, key=draws.__getitem__)] += 1
    return {a: wins[a] / DRAWS for a in arms}


def bandit_analysis(
    serving: Serving, row: CanaryRow, spec: CanarySpec, policy: TrafficPolicy
) -> dict[str, Any]:
    """Per candidate since the canary started: requests, errors and the error-rate difference
    with stable, judged pairs and win rate, feedback, reward, probability of being the best,
    current share, and why it is dropped (if it is)."""
    since = as_utc(row.started_at)
    window = arm_window(serving.db, row.logical, since=since)
    cand, stable = window.get("candidate"), window.get("stable")
    s = (stable.stats.errors, stable.stats.requests) if stable else (0, 0)
    alpha = spec.alpha / spec.tests
    shares = {c["ref"]: c["share"] for c in policy.candidates}
    feedback: dict[str, tuple[int, float]] = {}
    if spec.reward == "feedback":
        with serving.db.read() as session:
            feedback = feedback_votes(session, row.logical, since, by="model")
    arms: dict[str, dict[str, Any]] = {}
    rewards: dict[str, tuple[float, float]] = {}
    for ref in spec.candidates:
        n, e = cand.by_model.get(ref, (0, 0)) if cand else (0, 0)
        errors = difference((e, n), s, alpha=alpha)
        counts = pair_counts(serving, row.logical, candidate=ref, since=since)
        win = win_rate(counts.wins, counts.ties, counts.judged, alpha=alpha)
        if spec.reward == "judge":
            trials, successes = counts.judged, counts.wins + 0.5 * counts.ties
        else:
            trials, total = feedback.get(ref, (0, 0.0))
            successes = total
        dropped = None
        if errors.low > spec.max_error_rate_increase:
            dropped = f"error rate surely {errors.low:.2%} or more above stable's"
        elif counts.judged and win.high < spec.min_win_rate:
            dropped = f"judged win rate at most {win.high:.2f}, below {spec.min_win_rate:g}"
        arms[ref] = {
            "requests": n,
            "errors": e,
            "error_difference": {
                "estimate": errors.estimate,
                "low": round(errors.low, 6),
                "high": round(errors.high, 6),
            },
            "judged": counts.judged,
            "win_rate": win.estimate,
            "rewards": trials,
            "reward_mean": round(successes / trials, 4) if trials else None,
            "share": shares.get(ref, 0.0),
            "dropped": dropped,
        }
        if dropped is None:
            rewards[ref] = (successes, trials - successes)
    seen = sum(a["rewards"] for a in arms.values())  # the same evidence, the same shares
    rng = random.Random(f"{row.logical}:{row.revision}:{seen}")  # noqa: S311 - not secrets
    best = p_best(rewards, rng=rng) if rewards else {}
    for ref, arm in arms.items():
        arm["p_best"] = best.get(ref, 0.0)
    return {"reward": spec.reward, "arms": arms, "win_probability": spec.win_probability}


def _shares(spec: CanarySpec, bandit: dict[str, Any]) -> dict[str, float]:
    live = [r for r, a in bandit["arms"].items() if a["dropped"] is None]
    spare = 1 - spec.floor * len(live)
    return {
        r: (spec.floor + spare * a["p_best"]) if r in live else 0.0
        for r, a in bandit["arms"].items()
    }


def bandit_step(
    canaries: Canaries, row: CanaryRow, spec: CanarySpec, policy: TrafficPolicy, *, actor: str
) -> str:
    """One controller step of a live bandit: ``rollback`` (every candidate dropped), ``winner``
    (the bandit ends), ``rebalance`` (new shares) or ``hold``."""
    from llmops.serve.controller import roll_back

    bandit = bandit_analysis(canaries.serving, row, spec, policy)
    arms = bandit["arms"]
    live = {r: a for r, a in arms.items() if a["dropped"] is None}
    numbers = {"bandit": bandit}
    if not live:
        why = "; ".join(f"{r}: {a['dropped']}" for r, a in arms.items())
        roll_back(canaries, row, f"every candidate of the bandit dropped ({why})",
                  numbers=numbers, actor=actor)  # fmt: skip
        return "rollback"
    if row.state != "running":
        return "hold"
    top = max(live, key=lambda r: live[r]["p_best"])
    enough = all(a["rewards"] >= spec.min_judged for a in live.values())
    if len(live) == 1 or (enough and live[top]["p_best"] >= spec.win_probability):
        why = (
            f"the only candidate left ({len(arms) - 1} dropped)"
            if len(live) == 1
            else f"best with probability {live[top]['p_best']:.3f} after"
            f" {live[top]['rewards']} rewards ({spec.reward})"
        )
        return "winner" if _crown(canaries, row, top, why, numbers, actor) else "hold"
    shares = _shares(spec, bandit)
    current = {c["ref"]: c["share"] for c in policy.candidates}
    if max(abs(shares[r] - current.get(r, 0.0)) for r in shares) < _MIN_SHARE_CHANGE:
        return "hold"
    canaries.serving.traffic.set(
        row.logical,
        candidates=[{"ref": r, "share": v} for r, v in shares.items()],
        by_canary=True,
    )
    canaries.record(
        row.logical,
        "rebalance",
        ", ".join(f"{r} {v:.0%}" for r, v in shares.items()),
        step=row.step,
        weight=policy.weight,
        numbers=numbers,
        actor=actor,
    )
    return "rebalance"


def _crown(
    canaries: Canaries,
    row: CanaryRow,
    winner: str,
    why: str,
    numbers: dict[str, Any],
    actor: str,
) -> bool:
    """End the bandit: ``winner`` is the canary's one candidate, measured afresh on the step."""
    from llmops.serve.controller import compare_and_set

    if not compare_and_set(canaries, row, candidate=winner, step_started_at=utcnow()):
        return False
    policy = canaries.serving.traffic.set(
        row.logical, candidate=winner, candidates=None, by_canary=True
    )
    canaries.record(
        row.logical,
        "winner",
        f"{winner} wins the bandit: {why}",
        step=row.step,
        weight=policy.weight,
        numbers=numbers,
        actor=actor,
        event=True,
    )
    return True
