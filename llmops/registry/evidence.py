"""Evidence for a promotion: eval runs that tested this exact model version.

Runs are found through the ``eval_target`` index by content digest, so a retrained adapter under
the same name never inherits the old version's evidence. An adapter counts where a target loaded
it (``adapter:``) or declared it (``model_version:``); a base or merged model counts where a
target ran it without an adapter. Beating the alias's current holder is decided on per-case
scores paired by case (id, else variables): in the same run when both ran there, else across
runs of the same suite; the test is the paired bootstrap of the score differences.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlmodel import col

from llmops.db.models import EvalRun, EvalTarget
from llmops.db.timestamps import as_utc
from llmops.evals.compare import case_key
from llmops.evals.stats import Paired, paired

if TYPE_CHECKING:
    from llmops.db import Database
    from llmops.evals.results import EvalRuns

__all__ = ["Tested", "beats", "tested_in"]


@dataclass(frozen=True, slots=True)
class Tested:
    """One eval run's target that ran the version."""

    run_id: str
    target: str
    suite: str
    ended_at: datetime


def tested_in(
    db: Database,
    digest: str,
    *,
    kind: str,
    suite: str | None = None,
    since: datetime | None = None,
) -> list[Tested]:
    """Completed eval runs (newest first) whose target ran the version with ``digest``."""
    roles = ("adapter", "declared") if kind == "adapter" else ("model", "declared")
    query = (
        select(col(EvalTarget.run_id), col(EvalTarget.target), col(EvalTarget.role),
               col(EvalRun.suite_name), col(EvalRun.ended_at))
        .join(EvalRun, col(EvalRun.id) == col(EvalTarget.run_id))
        .where(col(EvalTarget.digest) == digest, col(EvalTarget.role).in_(roles),
               col(EvalRun.status) == "completed")
        .order_by(col(EvalRun.ended_at).desc())
    )  # fmt: skip
    if suite is not None:
        query = query.where(col(EvalRun.suite_name) == suite)
    if since is not None:
        query = query.where(col(EvalRun.ended_at) >= since)
    with db.read() as session:
        rows = session.execute(query).all()
        with_adapter: set[tuple[str, str]] = set()
        if kind != "adapter" and rows:
            # A base model that ran with an adapter on top is not evidence for the base.
            found = session.execute(
                select(col(EvalTarget.run_id), col(EvalTarget.target)).where(
                    col(EvalTarget.run_id).in_({r[0] for r in rows}),
                    col(EvalTarget.role) == "adapter",
                )
            ).all()
            with_adapter = {(r[0], r[1]) for r in found}
    seen: set[tuple[str, str]] = set()
    out = []
    for run_id, target, _role, suite_name, ended_at in rows:
        if (run_id, target) in seen or (run_id, target) in with_adapter:
            continue
        seen.add((run_id, target))
        out.append(Tested(run_id, target, suite_name, as_utc(ended_at)))
    return out


def _scores(evals: EvalRuns, run_id: str, target: str) -> dict[str, float]:
    return {
        case_key(r)[0]: float(r["score"] or 0.0)
        for r in evals.results(run_id, target=target)
        if r["passed"] is not None
    }


def beats(evals: EvalRuns, candidate: Tested, holder: list[Tested]) -> tuple[Paired, str] | None:
    """The candidate's per-case scores against the holder's (``b`` against ``a``), preferring
    the holder's target in the candidate's own run, and the run ids compared; None when no run
    of the holder shares a case with the candidate."""
    ordered = sorted(holder, key=lambda h: h.run_id != candidate.run_id)
    mine = _scores(evals, candidate.run_id, candidate.target)
    for other in ordered:
        theirs = _scores(evals, other.run_id, other.target)
        keys = sorted(mine.keys() & theirs.keys())
        if keys:
            stats = paired([theirs[k] for k in keys], [mine[k] for k in keys])
            where = (
                f"{candidate.run_id} ({other.target} vs {candidate.target})"
                if other.run_id == candidate.run_id
                else f"{other.run_id}:{other.target} vs {candidate.run_id}:{candidate.target}"
            )
            return stats, where
    return None
