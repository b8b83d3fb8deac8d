"""Traffic policies: validation, partial changes, compare-and-set, kill switch, audit."""

from __future__ import annotations

import threading

import pytest

from llmops import Workspace
from llmops.errors import ConflictError, InputError, NotFoundError


def test_a_policy_keeps_what_a_change_leaves_out(serve_ws: Workspace) -> None:
    traffic = serve_ws.serving.traffic
    first = traffic.set("bot", stable="support-lora@production", candidate="support-lora@2",
                        weight=10, sticky="header:x-user-id", shadow=0.2)  # fmt: skip
    assert first.revision == 1
    second = traffic.set("bot", weight=25)
    assert (second.stable, second.candidate, second.sticky, second.shadow) == (
        "support-lora@production", "support-lora@2", "header:x-user-id", 0.2)  # fmt: skip
    assert second.weight == 25 and second.revision == 2
    assert traffic.set("bot", weight=25).revision == 2  # no change, no new revision


@pytest.mark.parametrize("weight", [-1, 100.5, float("nan"), float("inf"), "ten"])
def test_weights_outside_0_to_100_are_refused(serve_ws: Workspace, weight: object) -> None:
    with pytest.raises(InputError, match="weight"):
        serve_ws.serving.traffic.set("bot", stable="support-lora@1", candidate="support-lora@2",
                                     weight=weight)  # type: ignore[arg-type]  # fmt: skip


def test_a_candidate_equal_to_stable_is_refused(serve_ws: Workspace) -> None:
    traffic = serve_ws.serving.traffic
    with pytest.raises(InputError, match="is the stable arm"):
        traffic.set("bot", stable="support-lora@1", candidate="support-lora@1", weight=5)
    with pytest.raises(InputError, match="is the stable arm"):  # an alias naming the same version
        traffic.set("bot", stable="support-lora@1", candidate="support-lora@production", weight=5)


def test_unknown_versions_and_policies_are_named(serve_ws: Workspace) -> None:
    traffic = serve_ws.serving.traffic
    with pytest.raises(NotFoundError, match="support-lora"):
        traffic.set("bot", stable="support-lora@9")
    with pytest.raises(InputError, match="needs a stable arm"):
        traffic.set("bot", weight=5)
    with pytest.raises(NotFoundError, match="no traffic policy"):
        traffic.get("nobody")
    with pytest.raises(InputError, match="shadow"):
        traffic.set("bot", stable="support-lora@1", shadow=1.5)


def test_if_revision_makes_racing_operators_conflict(serve_ws: Workspace) -> None:
    traffic = serve_ws.serving.traffic
    traffic.set("bot", stable="support-lora@1", candidate="support-lora@2", weight=5)
    results: list[object] = []

    def operator(weight: float) -> None:
        from llmops import Workspace as W

        own = W.open(serve_ws.root)
        try:
            results.append(own.serving.traffic.set("bot", weight=weight, if_revision=1))
        except ConflictError as exc:
            results.append(exc)
        finally:
            own.close()

    threads = [threading.Thread(target=operator, args=(w,)) for w in (20, 30, 40, 50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wins = [r for r in results if not isinstance(r, ConflictError)]
    assert len(wins) == 1 and len(results) == 4
    assert traffic.get("bot").weight == wins[0].weight  # type: ignore[attr-defined]
    assert traffic.get("bot").revision == 2


def test_the_kill_switch_sends_everything_to_stable_and_is_audited(serve_ws: Workspace) -> None:
    traffic = serve_ws.serving.traffic
    traffic.set("bot", stable="support-lora@1", candidate="support-lora@2", weight=40, shadow=0.5)
    killed = traffic.kill("bot", reason="bad answers")
    assert killed.killed and killed.weight == 0 and killed.shadow == 0
    history = traffic.history("bot")
    assert [h["action"] for h in history] == ["traffic.set", "traffic.kill"]
    assert history[1]["before"]["weight"] == 40 and history[1]["after"]["reason"] == "bad answers"
    assert not traffic.set("bot", weight=5).killed  # a new weight lifts the kill


def test_removing_the_candidate_clears_its_weight(serve_ws: Workspace) -> None:
    traffic = serve_ws.serving.traffic
    traffic.set("bot", stable="support-lora@1", candidate="support-lora@2", weight=40)
    cleared = traffic.set("bot", candidate=None)
    assert cleared.candidate is None and cleared.weight == 0


def test_a_header_cohort_goes_to_the_candidate_whatever_the_weight(attached: Workspace) -> None:
    from tests.serve.conftest import chat, start_gateway, wait_for

    traffic = attached.serving.traffic
    policy = traffic.set("support-bot", cohorts=["X-Tier=beta,internal"])
    assert policy.cohorts == [{"header": "x-tier", "values": ["beta", "internal"]}]
    assert policy.weight == 0
    with start_gateway(attached) as gw:
        wait_for(lambda: gw.snapshot.routes["support-bot"].cohorts)
        beta = chat(gw, headers={"x-tier": "beta"})
        other = chat(gw, headers={"x-tier": "gold"})
        plain = chat(gw)
        assert beta.headers["x-llmops-arm"] == "cohort"
        assert beta.json()["choices"][0]["message"]["content"].startswith("candidate:")
        assert other.headers["x-llmops-arm"] == plain.headers["x-llmops-arm"] == "stable"
        traffic.kill("support-bot", reason="stop")
        wait_for(lambda: gw.snapshot.routes["support-bot"].killed)
        assert chat(gw, headers={"x-tier": "beta"}).headers["x-llmops-arm"] == "stable"
    arms = wait_for(lambda: attached.serving.show("support-bot").arms)
    assert arms["cohort"].requests == 1 and "candidate" not in arms  # its own numbers
    assert traffic.set("support-bot", cohorts=None).cohorts == []
    for bad in (["x-tier"], ["x tier=beta"], ["x-tier="], [{"header": "x", "values": "beta"}]):
        with pytest.raises(InputError, match="is not HEADER=VALUE"):
            traffic.set("support-bot", cohorts=bad)
    with pytest.raises(InputError, match="no candidate to send a cohort to"):
        traffic.set("support-bot", candidate=None, cohorts=["x-tier=beta"])


def test_a_bandit_shares_the_candidate_weight_among_its_candidates(
    attached: Workspace,
) -> None:
    from llmops.evals.testing import MockServer
    from tests.serve.conftest import chat, start_gateway, tagged, wait_for

    with MockServer(tagged("third")) as third:
        attached.serving.backends.attach("support-lora@3", url=third.url, served_name="lora-v3")
        traffic = attached.serving.traffic
        traffic.set("support-bot", weight=100, sticky="header:x-user-id",
                    candidates=[{"ref": "support-lora@2", "share": 0.25},
                                {"ref": "support-lora@3", "share": 0.75}])  # fmt: skip
        with pytest.raises(InputError, match="sum to 1"):
            traffic.set("support-bot", candidates=[{"ref": "support-lora@2", "share": 0.5}])
        with start_gateway(attached) as gw:
            wait_for(lambda: gw.snapshot.routes["support-bot"].candidates)
            versions = [chat(gw, headers={"x-user-id": f"u{i}"}).headers["x-llmops-model-version"]
                        for i in range(200)]  # fmt: skip
            again = chat(gw, headers={"x-user-id": "u7"}).headers["x-llmops-model-version"]
    assert again == versions[7]  # a user keeps their candidate
    share = versions.count("support-lora@3") / len(versions)
    assert 0.6 < share < 0.9 and set(versions) == {"support-lora@2", "support-lora@3"}
