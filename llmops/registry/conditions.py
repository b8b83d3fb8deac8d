"""The conditions of a promotion policy, checked for one model version: kind and base model,
eval evidence (by digest, within ``max_age_days``, each metric at its minimum, and better than
the alias's current holder where asked), and approvals."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from llmops.db.timestamps import utcnow
from llmops.registry.approvals import approval_condition
from llmops.registry.evidence import Tested, beats, tested_in
from llmops.registry.records import Condition

if TYPE_CHECKING:
    from llmops.artifacts.store import ArtifactVersion
    from llmops.db.models import ModelRequest
    from llmops.registry.models import ModelRegistry
    from llmops.registry.policy import Policy

__all__ = ["check_conditions"]


def check_conditions(
    registry: ModelRegistry,
    policy: Policy,
    version: ArtifactVersion,
    holder: int | None,
    request: ModelRequest | None,
    evidence: list[dict[str, Any]],
) -> list[Condition]:
    """Each of the policy's conditions for ``version``, given the alias's ``holder`` and the
    pending ``request``; the eval runs used are appended to ``evidence``."""
    found: list[Condition] = []
    if policy.require_kind is not None:
        ok = version.kind == policy.require_kind
        found.append(
            Condition(
                name="require_kind",
                ok=ok,
                detail=f"{version.ref} is of kind {version.kind}"
                + ("" if ok else f", the policy takes {policy.require_kind}"),
            )
        )
    if policy.require_base_model is not None:
        base = policy.require_base_model
        ok = any(p.partition("@")[0] == base for p in version.parents)
        found.append(
            Condition(
                name="require_base_model",
                ok=ok,
                detail=f"made from {', '.join(version.parents) or 'nothing'}"
                + ("" if ok else f", the policy takes {base}"),
            )
        )
    since = utcnow() - timedelta(days=policy.max_age_days) if policy.max_age_days else None
    current = registry.get(f"{version.name}@{holder}") if holder is not None else None
    for i, rule in enumerate(policy.evals):
        name = f"evals[{i}] {rule.suite} {rule.metric}"
        runs = tested_in(
            registry.db, version.digest, kind=version.kind, suite=rule.suite, since=since
        )
        if not runs:
            age = f" in the last {policy.max_age_days:g} days" if since else ""
            found.append(
                Condition(
                    name=name,
                    ok=False,
                    detail=(
                        f"no completed run of suite {rule.suite!r}{age} tested {version.ref}"
                        f" ({version.digest[:19]}); run `llmops eval run` on it"
                    ),
                )
            )
            continue
        newest = runs[0]
        value = _metric(registry, newest, rule.metric)
        ok = value is not None and value >= rule.min
        shown = "nothing graded" if value is None else f"{value:.3f}"
        found.append(
            Condition(
                name=name,
                ok=ok,
                detail=(
                    f"{newest.run_id} ({newest.target}): {rule.metric} {shown}"
                    f" {'>=' if ok else 'is below'} {rule.min:g}"
                ),
            )
        )
        item: dict[str, Any] = {
            "suite": rule.suite,
            "run_id": newest.run_id,
            "target": newest.target,
            rule.metric: value,
        }
        if rule.beat_current:
            found.append(
                _beat(
                    registry,
                    rule.significance,
                    name,
                    version,
                    current,
                    newest,
                    rule.suite,
                    since,
                    item,
                )
            )
        evidence.append(item)
    if policy.approvals is not None:
        found.append(approval_condition(registry, policy, request))
    return found


def _beat(
    registry: ModelRegistry,
    significance: float,
    name: str,
    version: ArtifactVersion,
    current: ArtifactVersion | None,
    newest: Tested,
    suite: str,
    since: Any,
    item: dict[str, Any],
) -> Condition:
    label = f"{name} beat_current"
    if current is None or current.digest == version.digest:
        what = "no current holder" if current is None else "it already holds the alias"
        return Condition(name=label, ok=True, detail=f"{what}: nothing to beat")
    theirs = tested_in(registry.db, current.digest, kind=current.kind, suite=suite, since=since)
    found = beats(registry.evals, newest, theirs) if theirs else None
    if found is None:
        return Condition(
            name=label,
            ok=False,
            detail=(
                f"no run of {suite!r} shares cases between {current.ref} (the holder) and"
                f" {version.ref}; run both in one suite"
            ),
        )
    stats, where = found
    item.update(
        compared_with=current.ref,
        diff=stats.diff.mean,
        p_bootstrap=stats.p_bootstrap,
        n=stats.n,
        runs=where,
    )
    ok = stats.diff.mean > 0 and stats.p_bootstrap < significance
    return Condition(
        name=label,
        ok=ok,
        detail=(
            f"{version.ref} vs {current.ref} over {stats.n} cases in {where}: mean score"
            f" difference {stats.diff.mean:+.3f} (95% CI {stats.diff.low:+.3f} to"
            f" {stats.diff.high:+.3f}), paired bootstrap p={stats.p_bootstrap:.3g}"
            f" {'<' if ok else 'is not below'} {significance:g}"
        ),
    )


def _metric(registry: ModelRegistry, tested: Tested, metric: str) -> float | None:
    summary = registry.evals.get(tested.run_id).summary_model
    if summary is None:
        return None
    value = getattr(summary.target(tested.target), metric)
    return None if value is None else float(value)
