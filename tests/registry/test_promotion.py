"""Eval-gated promotion: evidence by digest, metrics, beating the holder, approvals, races."""

from __future__ import annotations

from pathlib import Path

import pytest
from sqlalchemy import update

from llmops import Workspace
from llmops.db.models import EvalRun
from llmops.db.timestamps import utcnow
from llmops.errors import ConflictError, InputError, NotFoundError, PolicyError, PromotionError
from llmops.evals.testing import MockServer
from tests.registry.conftest import acting_as, evaluate, write_policy

POLICY = """\
guards: [production]
evals:
  - {suite: capitals, metric: pass_rate, min: 0.75}
"""


def _conditions(verdict: object) -> dict[str, bool]:
    return {c.name: c.ok for c in verdict.conditions}  # type: ignore[attr-defined]


def test_an_unguarded_alias_is_promoted_without_conditions(reg_ws: Workspace) -> None:
    verdict = reg_ws.models.promote("support-lora@1", "staging")
    assert verdict.promoted and verdict.conditions == [] and verdict.previous is None
    assert reg_ws.models.get("support-lora@staging").version == 1


def test_a_guarded_alias_refuses_a_plain_move_and_names_the_command(reg_ws: Workspace) -> None:
    write_policy(reg_ws, POLICY)
    with pytest.raises(InputError, match=r"guarded by .*support-lora\.yaml.*llmops models promote"):
        reg_ws.artifacts.alias("support-lora@1", "production")
    reg_ws.artifacts.alias("support-lora@1", "canary")  # not guarded


def test_no_evidence_refuses_and_moves_nothing(reg_ws: Workspace) -> None:
    write_policy(reg_ws, POLICY)
    verdict = reg_ws.models.promote("support-lora@2", "production")
    assert not verdict.promoted and verdict.unmet == ["evals[0] capitals pass_rate"]
    assert "no completed run of suite 'capitals'" in verdict.conditions[0].detail
    with pytest.raises(Exception, match="no artifact version matches"):
        reg_ws.models.get("support-lora@production")
    actions = [e["action"] for e in reg_ws.models.history("support-lora")]
    assert "model.promotion.refused" in actions


def test_evidence_counts_only_for_the_exact_digest(
    reg_ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    write_policy(reg_ws, POLICY)
    evaluate(reg_ws, tmp_path, server.url, {"t": ("support-lora@1", "good")})
    assert reg_ws.models.promote("support-lora@1", "production", dry_run=True).ok
    # @2 is another digest under the same name: @1's run is no evidence for it.
    verdict = reg_ws.models.promote("support-lora@2", "production", dry_run=True)
    assert not verdict.ok and "tested support-lora@2" in verdict.conditions[0].detail


def test_a_failing_metric_and_stale_evidence_are_refused(
    reg_ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    write_policy(reg_ws, POLICY + "max_age_days: 7\n")
    run_id = evaluate(reg_ws, tmp_path, server.url, {"t": ("support-lora@2", "half")})
    verdict = reg_ws.models.promote("support-lora@2", "production")
    assert not verdict.promoted
    assert "pass_rate 0.500 is below 0.75" in verdict.conditions[0].detail
    evaluate(reg_ws, tmp_path, server.url, {"t": ("support-lora@2", "good")})
    assert reg_ws.models.promote("support-lora@2", "production", dry_run=True).ok
    with reg_ws.db.write() as session:  # every run is now eight days old
        session.execute(update(EvalRun).values(ended_at=utcnow().replace(year=2000)))
    stale = reg_ws.models.promote("support-lora@2", "production", dry_run=True)
    assert not stale.ok and "in the last 7 days" in stale.conditions[0].detail
    assert run_id


def test_beat_current_uses_paired_statistics_against_the_holder(
    reg_ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    write_policy(
        reg_ws,
        """\
guards: [production]
evals:
  - {suite: capitals, metric: pass_rate, min: 0.0, beat_current: true, significance: 0.05}
""",
    )
    # The holder is @1, promoted while nothing held the alias (nothing to beat).
    evaluate(reg_ws, tmp_path, server.url, {"holder": ("support-lora@1", "half")})
    first = reg_ws.models.promote("support-lora@1", "production")
    assert first.promoted and "nothing to beat" in first.conditions[-1].detail
    run_id = evaluate(reg_ws, tmp_path, server.url,
                      {"old": ("support-lora@1", "half"), "new": ("support-lora@2", "good")})  # fmt: skip
    verdict = reg_ws.models.promote("support-lora@2", "production", dry_run=True)
    beat = verdict.conditions[-1]
    assert beat.ok and "over 8 cases" in beat.detail and "paired bootstrap p=" in beat.detail
    assert run_id in beat.detail  # paired within the same run
    assert verdict.evidence[0]["compared_with"] == "support-lora@1"
    assert verdict.evidence[0]["diff"] == pytest.approx(0.5)
    # A candidate no better than the holder is refused.
    evaluate(reg_ws, tmp_path, server.url, {"again": ("support-lora@2", "half")}, suite="capitals")
    worse = reg_ws.models.promote("support-lora@2", "production", dry_run=True)
    assert not worse.ok and "is not below 0.05" in worse.conditions[-1].detail


def test_requirements_on_kind_and_base_model(reg_ws: Workspace) -> None:
    write_policy(reg_ws, "guards: [production]\nrequire_kind: base-model\n"
                 "require_base_model: other\n")  # fmt: skip
    verdict = reg_ws.models.promote("support-lora@1", "production", dry_run=True)
    assert _conditions(verdict) == {"require_kind": False, "require_base_model": False}
    assert "made from base@1, the policy takes other" in verdict.conditions[1].detail


def test_approvals_are_requested_given_by_others_and_then_promote(reg_ws: Workspace) -> None:
    write_policy(
        reg_ws, "guards: [production]\napprovals: {count: 2, approvers: [bob, carol, dave]}\n"
    )
    with acting_as(reg_ws, "alice"):
        asked = reg_ws.models.promote("support-lora@1", "production")
        assert not asked.promoted and asked.unmet == ["approvals"] and asked.request_id
        with pytest.raises(PromotionError, match="alice requested this promotion"):
            reg_ws.models.approve("support-lora@1", "production")
    with acting_as(reg_ws, "mallory"), pytest.raises(PromotionError, match="not an approver"):
        reg_ws.models.approve("support-lora@1", "production")
    with acting_as(reg_ws, "bob"):
        first = reg_ws.models.approve("support-lora@1", "production", comment="looks good")
        assert (first.approvals, first.needed) == (1, 2)
        reg_ws.models.approve("support-lora@1", "production")  # twice counts once
    assert not reg_ws.models.promote("support-lora@1", "production").promoted
    with acting_as(reg_ws, "carol"):
        assert reg_ws.models.approve("support-lora@1", "production").approvals == 2
    done = reg_ws.models.promote("support-lora@1", "production")
    assert done.promoted and done.request_id == asked.request_id
    with pytest.raises(NotFoundError, match="no promotion request"):
        reg_ws.models.approve("support-lora@1", "production")


def test_a_rejected_request_blocks_the_promotion(reg_ws: Workspace) -> None:
    write_policy(reg_ws, "guards: [production]\napprovals: {count: 1, allow_self: true}\n")
    reg_ws.models.promote("support-lora@2", "production")
    reg_ws.models.reject("support-lora@2", "production", comment="not yet")
    # The rejected request is closed: promoting again opens a new one.
    again = reg_ws.models.promote("support-lora@2", "production")
    assert not again.promoted and again.request_id is not None
    reg_ws.models.approve("support-lora@2", "production")  # allow_self: true
    assert reg_ws.models.promote("support-lora@2", "production").promoted


def test_racing_promotions_of_one_alias_one_wins(
    reg_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.registry import models as registry_models

    original = registry_models.check_conditions
    moved = []

    def slow_check(*args: object, **kwargs: object) -> object:
        found = original(*args, **kwargs)  # type: ignore[arg-type]
        if not moved:  # another user's promotion commits while this one checks
            moved.append(True)
            other = Workspace.open(reg_ws.root)
            try:
                assert other.models.promote("support-lora@1", "production").promoted
            finally:
                other.close()
        return found

    write_policy(reg_ws, "guards: [production]\nrequire_kind: adapter\n")
    monkeypatch.setattr(registry_models, "check_conditions", slow_check)
    with pytest.raises(ConflictError, match="moved to version 1 while this promotion was checked"):
        reg_ws.models.promote("support-lora@2", "production")
    assert reg_ws.models.get("support-lora@production").version == 1


def test_a_malformed_policy_names_its_lines(reg_ws: Workspace) -> None:
    write_policy(reg_ws, "guards: [production]\nevals:\n  - {suite: s, metric: accuracy}\nfoo: 1\n")
    with pytest.raises(PolicyError) as info:
        reg_ws.models.promote("support-lora@1", "production")
    text = str(info.value)
    assert "support-lora.yaml:3" in text and "evals.0.metric" in text
    assert "line 4: unknown field 'foo'" in text
