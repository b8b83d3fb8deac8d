"""Canaries: sequential statistics, the controller's decisions against stub arms (a failing, a
slow and a good candidate), promotion through the registry (with a policy's approvals), the
controller inside the gateway with its analysis endpoint, and leader leases."""

from __future__ import annotations

import random

import httpx
import pytest

from llmops import Workspace
from llmops.errors import ConflictError, InputError
from llmops.evals.testing import MockServer
from llmops.serve.controller import Controller, acquire_lease, reconcile
from llmops.serve.sequential import difference, rate_interval
from tests.serve.conftest import chat, start_gateway, tagged, wait_for


def test_an_aa_canary_is_flagged_at_most_alpha_of_the_time_however_often_it_is_looked_at() -> None:
    rng = random.Random(7)
    alpha, runs, alarms = 0.05, 300, 0
    for _ in range(runs):
        c = s = nc = ns = 0
        for _ in range(100):  # 100 looks, 20 requests per arm between looks
            c += sum(rng.random() < 0.1 for _ in range(20))
            s += sum(rng.random() < 0.1 for _ in range(20))
            nc += 20
            ns += 20
            if difference((c, nc), (s, ns), alpha=alpha).low > 0:
                alarms += 1
                break
    assert alarms / runs <= alpha


def test_a_clear_difference_is_found_quickly() -> None:
    found = next(n for n in range(10, 2000, 10)
                 if difference((int(0.3 * n), n), (0, 9 * n), alpha=0.05).low > 0.02)  # fmt: skip
    assert found <= 200
    i = rate_interval(5, 100, alpha=0.05)
    assert i.low < 0.05 < i.high and rate_interval(0, 0, alpha=0.05).estimate is None


def _traffic(gw: object, n: int, *, start: int = 0) -> None:
    for user in range(start, start + n):
        assert chat(gw, headers={"x-user-id": f"u{user}"}).status_code == 200  # type: ignore[arg-type]


@pytest.fixture
def canary_ws(attached: Workspace) -> Workspace:
    attached.serving.traffic.set("support-bot", candidate=None, sticky="header:x-user-id")
    return attached


def _run(ws: Workspace) -> str:
    import time

    time.sleep(0.15)  # the gateway's request log reaches the database
    return reconcile(ws.serving.canaries, "support-bot", actor="test")


def test_a_good_candidate_walks_every_step_and_the_alias_moves(canary_ws: Workspace) -> None:
    canaries = canary_ws.serving.canaries
    status = canaries.start("support-bot", candidate="support-lora@2", steps=[20, 60, 100],
                            min_requests=10, min_seconds=0)  # fmt: skip
    assert (status.state, status.weight) == ("running", 20)
    with start_gateway(canary_ws) as gw:
        actions = []
        for round_ in range(12):
            wait_for(lambda: gw.snapshot.routes["support-bot"].weight
                     == canary_ws.serving.traffic.get("support-bot").weight)  # fmt: skip
            _traffic(gw, 60, start=round_ * 60)
            actions.append(_run(canary_ws))
            if actions[-1] == "promote":
                break
    assert actions.count("advance") == 2 and actions[-1] == "promote"
    assert canary_ws.models.get("support-lora@production").version == 2
    policy = canary_ws.serving.traffic.get("support-bot")
    assert policy.candidate is None and policy.stable == "support-lora@production"
    final = canaries.status("support-bot")
    assert final.state == "promoted"
    assert [d.action for d in final.decisions if d.action != "hold"] == [
        "start", "advance", "advance", "promote"]  # fmt: skip
    from llmops.registry.events import list_events

    types = [e["type"] for e in list_events(canary_ws.db, limit=50)]
    assert {"canary.start", "canary.advance", "canary.promote"} <= set(types)


def test_a_candidate_failing_a_third_of_its_requests_is_rolled_back(attached: Workspace) -> None:
    with MockServer(tagged("bad"), fault_every=3, fault_kind="500") as bad:
        attached.serving.backends.attach("support-lora@3", url=bad.url, served_name="bad")
        attached.serving.traffic.set("support-bot", candidate=None, sticky="header:x-user-id")
        attached.serving.canaries.start("support-bot", candidate="support-lora@3",
                                        steps=[50, 100], min_requests=10_000)  # fmt: skip
        with start_gateway(attached) as gw:
            actions = []
            for round_ in range(10):
                _traffic(gw, 60, start=round_ * 60)  # clients still get answers (failover)
                actions.append(_run(attached))
                if actions[-1] == "rollback":
                    break
            assert actions[-1] == "rollback"
            wait_for(lambda: gw.snapshot.routes["support-bot"].killed)
            assert {chat(gw).headers["x-llmops-arm"] for _ in range(5)} == {"stable"}
    status = attached.serving.canaries.status("support-bot")
    assert status.state == "rolled_back" and "error rate" in status.reason
    assert status.decisions[-1].numbers["error_rate"]["breach"] is True


def test_a_slower_candidate_breaches_the_latency_threshold(attached: Workspace) -> None:
    with MockServer(tagged("slow"), latency_s=0.15) as slow:
        attached.serving.backends.attach("support-lora@3", url=slow.url, served_name="slow")
        attached.serving.traffic.set("support-bot", candidate=None, sticky="header:x-user-id")
        attached.serving.canaries.start("support-bot", candidate="support-lora@3",
                                        steps=[50, 100], min_requests=10_000)  # fmt: skip
        with start_gateway(attached) as gw:
            for round_ in range(8):
                _traffic(gw, 40, start=round_ * 40)
                if _run(attached) == "rollback":
                    break
    status = attached.serving.canaries.status("support-bot")
    assert status.state == "rolled_back" and status.reason.startswith("latency")


def test_promotion_waits_for_the_policys_approval(
    canary_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.registry.conftest import write_policy

    write_policy(canary_ws, "guards: [production]\napprovals: {count: 1, allow_self: false}\n")
    canaries = canary_ws.serving.canaries
    with start_gateway(canary_ws) as gw:
        _traffic(gw, 30)  # the stable baseline, before the canary (at 100% stable gets none)
        canaries.start("support-bot", candidate="support-lora@2", steps=[100], min_requests=5,
                       min_seconds=0)  # fmt: skip
        wait_for(lambda: gw.snapshot.routes["support-bot"].weight == 100)
        _traffic(gw, 20, start=100)
    assert _run(canary_ws) == "promote"
    waiting = canaries.status("support-bot")
    assert waiting.state == "awaiting_approval" and "approval" in waiting.reason
    monkeypatch.setenv("LLMOPS_USER", "bob")
    bob = Workspace.open(canary_ws.root)
    try:
        bob.models.approve("support-lora@2", "production")
    finally:
        bob.close()
    assert _run(canary_ws) == "promote"
    assert canaries.status("support-bot").state == "promoted"
    assert canary_ws.models.get("support-lora@production").version == 2


def test_by_hand_pause_resume_advance_rollback_and_bad_starts(canary_ws: Workspace) -> None:
    canaries = canary_ws.serving.canaries
    with pytest.raises(InputError, match="steps must increase"):
        canaries.start("support-bot", candidate="support-lora@2", steps=[50, 10])
    with pytest.raises(InputError, match="min_requests"):
        canaries.start("support-bot", candidate="support-lora@2", min_requests=0)
    canaries.start("support-bot", candidate="support-lora@2", steps=[10, 50, 100])
    with pytest.raises(ConflictError, match="is running"):
        canaries.start("support-bot", candidate="support-lora@2")
    assert canaries.pause("support-bot").state == "paused"
    assert _run(canary_ws) == "hold"  # paused: no advance without numbers either
    assert canaries.resume("support-bot").state == "running"
    assert canaries.advance("support-bot").weight == 50
    rolled = canaries.rollback("support-bot", reason="changed my mind")
    assert rolled.state == "rolled_back" and rolled.weight == 0
    assert [d.action for d in rolled.decisions] == ["start", "pause", "hold", "resume", "advance",
                                                    "rollback"]  # fmt: skip


def test_the_gateway_runs_the_controller_and_serves_the_analysis(canary_ws: Workspace) -> None:
    canary_ws.serving.canaries.start("support-bot", candidate="support-lora@2", steps=[50, 100],
                                     min_requests=10, min_seconds=0)  # fmt: skip
    with start_gateway(canary_ws, canary_interval_s=0.2) as gw:
        user = 0
        while canary_ws.serving.canaries.row("support-bot").state == "running" and user < 3000:
            _traffic(gw, 20, start=user)
            user += 20
        analysis = httpx.get(f"{gw.url.removesuffix('/v1')}/canary/support-bot/analysis").json()
        missing = httpx.get(f"{gw.url.removesuffix('/v1')}/canary/nobody/analysis")
    assert analysis["state"] == "promoted" and analysis["candidate"] == "support-lora@2"
    assert missing.status_code == 404
    assert {"at", "action", "reason"} <= analysis["decisions"][-1].keys()


def test_one_replica_leads_a_canary_at_a_time(canary_ws: Workspace) -> None:
    serving = canary_ws.serving
    assert acquire_lease(serving, "canary:x", "replica-a", ttl_s=30)
    assert not acquire_lease(serving, "canary:x", "replica-b", ttl_s=30)
    assert acquire_lease(serving, "canary:x", "replica-a", ttl_s=30)  # renewal
    assert acquire_lease(serving, "canary:x", "replica-b", ttl_s=-1) is False
    serving.canaries.start("support-bot", candidate="support-lora@2", steps=[10, 100])
    a = Controller(serving, replica="a").tick()
    b = Controller(serving, replica="b").tick()
    assert a == {"support-bot": "hold"} and b == {}


def test_a_restarted_gateway_resumes_the_canary_where_it_was(canary_ws: Workspace) -> None:
    canaries = canary_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", steps=[20, 60, 100],
                   min_requests=10, min_seconds=0)  # fmt: skip
    with start_gateway(canary_ws, canary_interval_s=0.2) as first:
        user = 0
        while canaries.row("support-bot").step == 0 and user < 2000:
            _traffic(first, 20, start=user)
            user += 20
    step = canaries.row("support-bot").step
    assert step >= 1  # the first replica advanced, then went away
    with start_gateway(canary_ws, canary_interval_s=0.2) as second:
        while canaries.row("support-bot").state == "running" and user < 6000:
            _traffic(second, 20, start=user)
            user += 20
    final = canaries.status("support-bot")
    assert final.state == "promoted"
    actors = {d.actor for d in final.decisions if d.action in ("advance", "promote")}
    assert len(actors) == 2  # both replicas led, one after the other (the lease expired)


def test_an_unjudgeable_last_step_never_promotes_a_failing_candidate(attached: Workspace) -> None:
    with MockServer(tagged("dead"), fault_every=1, fault_kind="500") as dead:
        attached.serving.backends.attach("support-lora@3", url=dead.url, served_name="dead")
        attached.serving.traffic.set("support-bot", candidate=None, sticky="header:x-user-id")
        with start_gateway(attached) as gw:
            _traffic(gw, 40)  # stable traffic before the canary: the baseline at 100%
            attached.serving.canaries.start("support-bot", candidate="support-lora@3",
                                            steps=[100], min_requests=10, min_seconds=0)  # fmt: skip
            actions = []
            for round_ in range(6):
                wait_for(lambda: gw.snapshot.routes["support-bot"].weight == 100)
                _traffic(gw, 20, start=1000 + round_ * 20)
                actions.append(_run(attached))
                if actions[-1] != "hold":
                    break
    assert "promote" not in actions and actions[-1] == "rollback"
    assert attached.models.get("support-lora@production").version == 1


def test_a_breach_while_waiting_for_approval_rolls_back(attached: Workspace) -> None:
    from tests.registry.conftest import write_policy

    write_policy(attached, "guards: [production]\napprovals: {count: 1, allow_self: false}\n")
    with MockServer(tagged("flaky")) as flaky:
        attached.serving.backends.attach("support-lora@3", url=flaky.url, served_name="flaky")
        attached.serving.traffic.set("support-bot", candidate=None, sticky="header:x-user-id")
        canaries = attached.serving.canaries
        canaries.start("support-bot", candidate="support-lora@3", steps=[50], min_requests=5,
                       min_seconds=0)  # fmt: skip
        with start_gateway(attached) as gw:
            _traffic(gw, 40)
            assert _run(attached) == "promote"
            assert canaries.row("support-bot").state == "awaiting_approval"
            flaky.state.fault_every, flaky.state.fault_kind = 1, "500"  # it starts failing
            for round_ in range(8):
                _traffic(gw, 40, start=100 + round_ * 40)
                if _run(attached) == "rollback":
                    break
    assert canaries.row("support-bot").state == "rolled_back"
    version = attached.models.get("support-lora@3")
    assert attached.models.pending(version, "production") is None  # no approval can ship it now


def test_a_human_kill_ends_the_canary_and_is_not_undone(canary_ws: Workspace) -> None:
    canaries = canary_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", steps=[10, 50], min_requests=1,
                   min_seconds=0)  # fmt: skip
    canary_ws.serving.traffic.kill("support-bot", reason="by hand")
    assert _run(canary_ws) == "rollback"
    assert canaries.row("support-bot").reason == "the traffic policy was killed"
    assert canary_ws.serving.traffic.get("support-bot").killed


def test_a_hand_change_of_the_arms_stops_the_canary_and_leaves_the_split(
    canary_ws: Workspace,
) -> None:
    canaries = canary_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", steps=[10, 50])
    canary_ws.serving.traffic.set("support-bot", candidate="support-lora@3")
    assert _run(canary_ws) == "rollback"
    assert "changed by hand" in canaries.row("support-bot").reason
    policy = canary_ws.serving.traffic.get("support-bot")
    assert (policy.candidate, policy.weight, policy.killed) == ("support-lora@3", 10, False)


def test_a_rollback_and_a_promotion_racing_have_one_winner(canary_ws: Workspace) -> None:
    from llmops.serve.controller import promote, roll_back

    canaries = canary_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", steps=[100])
    seen = canaries.row("support-bot")  # both decisions saw this revision
    assert roll_back(canaries, seen, "first", numbers={}, actor="a") is True
    assert promote(canaries, seen, "second", numbers={}, actor="b") is False
    assert roll_back(canaries, seen, "third", numbers={}, actor="c") is False
    status = canaries.status("support-bot")
    assert status.state == "rolled_back"
    assert [d.action for d in status.decisions] == ["start", "rollback"]
    assert canary_ws.models.get("support-lora@production").version == 1


def test_a_failed_advance_leaves_the_step_where_it_was(
    canary_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    canaries = canary_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", steps=[10, 50, 100])

    def broken(*args: object, **kwargs: object) -> None:
        raise InputError("the split could not move")

    monkeypatch.setattr(canary_ws.serving.traffic, "set", broken)
    with pytest.raises(InputError, match="could not move"):
        canaries.advance("support-bot")
    assert canaries.row("support-bot").step == 0


def test_starts_that_make_no_sense_are_refused(canary_ws: Workspace) -> None:
    canaries = canary_ws.serving.canaries
    with pytest.raises(InputError, match="is not a version of support-lora"):
        canaries.start("support-bot", candidate="base@1")
    with pytest.raises(InputError, match="no backend serves support-lora@3"):
        canaries.start("support-bot", candidate="support-lora@3")
    with pytest.raises(InputError, match="is the stable arm"):
        canaries.start("support-bot", candidate="support-lora@1")
    for bad in ({"max_p95_increase": float("inf")}, {"min_seconds": float("inf")},
                {"steps": [1e-300]}):  # fmt: skip
        with pytest.raises(InputError, match="invalid canary spec"):
            canaries.start("support-bot", candidate="support-lora@2", **bad)


def test_a_new_canary_shows_only_its_own_decisions(canary_ws: Workspace) -> None:
    canaries = canary_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", steps=[10, 100])
    canaries.rollback("support-bot", reason="first try")
    canary_ws.serving.traffic.set("support-bot", weight=0)
    fresh = canaries.start("support-bot", candidate="support-lora@2", steps=[10, 100])
    assert [d.action for d in fresh.decisions] == ["start"]


def test_a_live_canary_owns_the_weight_and_stale_advances_conflict(canary_ws: Workspace) -> None:
    from llmops.serve.controller import step_to

    canaries = canary_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", steps=[10, 50, 100])
    with pytest.raises(InputError, match="controls the weight"):
        canary_ws.serving.traffic.set("support-bot", weight=80)
    stale = canaries.row("support-bot")
    canaries.advance("support-bot")
    spec = canaries.status("support-bot").spec
    from llmops.serve.canary import CanarySpec

    assert step_to(canaries, stale, 1, CanarySpec(**spec), "late", numbers={}, actor="x") is False
    assert canaries.rollback("support-bot").state == "rolled_back"
    assert canary_ws.serving.traffic.set("support-bot", weight=5).weight == 5  # free again


def test_oversized_feedback_is_413(attached: Workspace) -> None:
    with start_gateway(attached, max_request_bytes=2048) as gw:
        r = httpx.post(f"{gw.url}/feedback", json={"response_id": "gw-x", "comment": "x" * 5000})
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"
