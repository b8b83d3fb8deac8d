"""Pairwise judging of shadow pairs: the eval harness's pairwise judge (both presentation orders,
position consistency recorded) compares the candidate's answer with the stable arm's answer to
the same live request, and the verdict is kept on the pair (``ws.serving.canaries.judge``; the
gateway's controller runs it for the canaries it leads).

Only pairs of the canary's own candidate, made since the canary started, with both answers, are
judged, oldest first, each once: a judge call that fails leaves the pair for the next pass, a
reply with no verdict marks it (``judge_error``) so a broken judge cannot loop on it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import Integer, func, select, update
from sqlmodel import col

from llmops.db.models import ShadowPair
from llmops.db.timestamps import utcnow

if TYPE_CHECKING:
    from llmops.evals.suite import ModelSpec
    from llmops.serve.serving import Serving

__all__ = ["JudgeOutcome", "PairCounts", "judge_pairs", "pair_counts", "question"]

_VERDICTS = {"A": "candidate", "B": "stable", "TIE": "tie"}
_MAX_MESSAGES = 20


def question(messages: Any) -> str:
    """What the judge is shown as the question: the conversation's last messages as text
    (any JSON a client sent; content parts are joined, other shapes shown as JSON)."""
    if not isinstance(messages, list):
        return json.dumps(messages, ensure_ascii=False, default=str)[:20_000]
    lines = []
    for message in messages[-_MAX_MESSAGES:]:
        if not isinstance(message, dict):
            lines.append(json.dumps(message, ensure_ascii=False, default=str))
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = " ".join(
                str(part.get("text", "")) if isinstance(part, dict) else str(part)
                for part in content
            )
        elif not isinstance(content, str):
            content = json.dumps(content, ensure_ascii=False, default=str)
        lines.append(f"{str(message.get('role', 'user'))[:20]}: {content}")
    if len(lines) == 1:
        return lines[0].partition(": ")[2]
    return "\n".join(lines)


@dataclass(frozen=True, slots=True)
class PairCounts:
    """Judged pairs of a canary: the candidate's wins, ties and losses."""

    wins: int
    ties: int
    losses: int
    consistent: int
    """Pairs whose verdict was the same in both presentation orders."""
    no_verdict: int
    pending: int
    """Pairs with both answers not judged yet."""

    @property
    def judged(self) -> int:
        """Pairs with a verdict."""
        return self.wins + self.ties + self.losses


def pair_counts(serving: Serving, logical: str, *, candidate: str, since: datetime) -> PairCounts:
    """Verdict counts of ``candidate``'s pairs on ``logical`` since ``since`` (SQL aggregates)."""
    where = [
        col(ShadowPair.logical) == logical,
        col(ShadowPair.candidate_model) == candidate,
        col(ShadowPair.at) >= since,
        col(ShadowPair.candidate_answer).is_not(None),
    ]
    with serving.db.read() as session:
        rows = session.execute(
            select(
                col(ShadowPair.verdict),
                col(ShadowPair.judge_error).is_not(None),
                func.count(),
                func.sum(func.cast(col(ShadowPair.consistent), Integer())),
            )
            .where(*where)
            .group_by(col(ShadowPair.verdict), col(ShadowPair.judge_error).is_not(None))
        ).all()
    counts = {"candidate": 0, "tie": 0, "stable": 0}
    consistent = no_verdict = pending = 0
    for verdict, errored, n, agreed in rows:
        if verdict in counts:
            counts[verdict] += int(n)
            consistent += int(agreed or 0)
        elif errored:
            no_verdict += int(n)
        else:
            pending += int(n)
    return PairCounts(
        wins=counts["candidate"],
        ties=counts["tie"],
        losses=counts["stable"],
        consistent=consistent,
        no_verdict=no_verdict,
        pending=pending,
    )


@dataclass(frozen=True, slots=True)
class JudgeOutcome:
    """What one judging pass did."""

    judged: int
    """Pairs that got a verdict or were marked as having none."""
    unreachable: int = 0
    """Pairs left pending because every judge call failed (tried again next pass)."""
    error: str | None = None
    """The last call failure, when there was one."""


def judge_pairs(
    serving: Serving,
    logical: str,
    *,
    candidates: Sequence[str],
    since: datetime,
    model: ModelSpec,
    rubric: str,
    limit: int = 32,
    concurrency: int = 4,
    timeout_s: float = 60.0,
    method: Literal["generate", "likelihood"] = "generate",
) -> JudgeOutcome:
    """Judge up to ``limit`` unjudged pairs of ``candidates`` (model versions) on ``logical``
    made since ``since``. A pair the judge could not be reached for waits for the next pass,
    at most :data:`MAX_ATTEMPTS` passes; then (as a pair that makes the judge fail, or whose
    reply has no verdict) it is marked with the reason, so it never blocks newer pairs."""
    with serving.db.read() as session:
        pairs = session.execute(
            select(
                col(ShadowPair.id),
                col(ShadowPair.messages),
                col(ShadowPair.stable_answer),
                col(ShadowPair.candidate_answer),
                col(ShadowPair.judge_details),
            )
            .where(
                col(ShadowPair.logical) == logical,
                col(ShadowPair.candidate_model).in_(list(candidates)),
                col(ShadowPair.at) >= since,
                col(ShadowPair.candidate_answer).is_not(None),
                col(ShadowPair.verdict).is_(None),
                col(ShadowPair.judge_error).is_(None),
            )
            .order_by(col(ShadowPair.id))
            .limit(limit)
        ).all()
    if not pairs:
        return JudgeOutcome(0)
    from llmops._redact import Redactor

    results = asyncio.run(_judge_all(serving, pairs, model, rubric, concurrency, timeout_s, method))
    # A judge's error may echo its key (as OpenAI-style 401s do): nothing stored keeps one.
    scrub = Redactor([model.api_key_env] if model.api_key_env else [])
    results = [
        (v, c, {**d, "errors": [scrub(e) for e in d.get("errors") or []]}, f)
        for v, c, d, f in results
    ]
    done = unreachable = 0
    error = None
    with serving.db.write() as session:
        for pair, (verdict, consistent, details, failed) in zip(pairs, results, strict=True):
            values: dict[str, Any] = {"judge_details": details}
            if failed:  # the judge could not be reached: the pair waits for the next pass
                attempts = int((pair[4] or {}).get("attempts", 0)) + 1
                error = (details.get("errors") or ["the judge did not answer"])[-1]
                if attempts < MAX_ATTEMPTS:
                    values["judge_details"] = {**details, "attempts": attempts}
                    session.execute(
                        update(ShadowPair).where(col(ShadowPair.id) == pair[0]).values(values)
                    )
                    unreachable += 1
                    continue
                values["judge_error"] = f"the judge failed {attempts} times: {error}"[:1000]
            elif verdict is None:
                errors = "; ".join(details.get("errors") or []) or "no verdict in the judge's reply"
                values["judge_error"] = errors[:1000]
            else:
                values["verdict"] = _VERDICTS[verdict]
                values["consistent"] = consistent
            values["judged_at"] = utcnow()
            session.execute(update(ShadowPair).where(col(ShadowPair.id) == pair[0]).values(values))
            done += 1
    return JudgeOutcome(done, unreachable, error)


MAX_ATTEMPTS = 3
"""Passes a pair is tried while the judge cannot be reached, before it is marked."""

MAX_SHOWN = 20_000
"""Characters of the question and of each answer shown to the judge (the rest is cut, said
so): a hostile request cannot blow the judge prompt's render limit or the judge's context."""


_local_judges: dict[str, Any] = {}
"""Local (transformers) judge providers by identity (weights), kept for later passes."""


async def _judge_all(
    serving: Serving,
    pairs: Any,
    model: ModelSpec,
    rubric: str,
    concurrency: int,
    timeout_s: float,
    method: Literal["generate", "likelihood"] = "generate",
) -> list[tuple[str | None, bool | None, dict[str, Any], bool]]:
    from llmops.evals.engine import Engine, RunStats
    from llmops.evals.judging import Judges, for_judge, model_key
    from llmops.evals.providers import make_provider
    from llmops.evals.suite import JudgeSpec

    if serving.prompts is None:
        raise RuntimeError("this Serving has no prompt registry for the judge's prompts")
    judge = JudgeSpec(model=model, mode="pairwise", rubric=rubric, method=method)
    resolver = serving.resolver() if serving.resolver is not None else None
    prompts = serving.prompts()
    provider = make_provider(model, models=resolver, timeout_s=timeout_s)
    if model.provider == "transformers":  # keyed by its weights' digests: they load once
        provider = _local_judges.setdefault(provider.key, provider)
    try:
        engine = Engine(
            _Limits(max_retries=2, timeout_s=timeout_s),
            concurrency=concurrency,
            cache=None,
            read_cache=False,
            stats=RunStats(),
        )
        judges = Judges(prompts, judge, engine, {model_key(model): provider})

        def cut(text: str) -> str:
            return for_judge(text, MAX_SHOWN)

        async def one(pair: Any) -> tuple[str | None, bool | None, dict[str, Any], bool]:
            _, messages, stable_answer, candidate_answer, _ = pair
            try:
                verdict, consistent, details = await judges.compare(
                    cut(question(messages)), cut(candidate_answer), cut(stable_answer)
                )
            except Exception as exc:  # this pair breaks the judge prompt: it alone is marked
                message = getattr(exc, "message", None) or str(exc)
                error = f"{type(exc).__name__}: {message}"[:1000]
                return None, None, {"orders": [], "replies": [], "errors": [error]}, False
            # Every call failing (the judge unreachable) is not a verdict on the pair.
            calls = len(details["orders"]) * 2
            failed = verdict is None and calls > 0 and len(details["errors"]) >= calls
            return verdict, consistent, details, failed

        return await asyncio.gather(*(one(p) for p in pairs))
    finally:
        await provider.close()


@dataclass(frozen=True, slots=True)
class _Limits:
    max_retries: int
    timeout_s: float
