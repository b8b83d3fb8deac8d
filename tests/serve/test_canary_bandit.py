"""A bandit canary (strategy thompson) over two candidates: Thompson sampling on judged wins
moves the share to the better one, the winner is detected, walks the steps and is promoted; a
candidate that fails its requests is dropped; bad bandit specs are one-line errors."""

from __future__ import annotations

import json
import random
import time
from collections.abc import Iterator
from typing import Any

import pytest

from llmops import Workspace
from llmops.errors import InputError
from llmops.evals.testing import MockServer
from llmops.serve.bandit import p_best
from llmops.serve.controller import reconcile
from tests.serve.conftest import chat, start_gateway, tagged, wait_for


def _prefer_third(body: dict[str, Any]) -> str:
    """A judge for which answers of the third server win and the others tie."""
    prompt = body["messages"][-1]["content"]
    a, _, b = prompt.partition("Answer B:")
    verdict = "A" if "third:" in a else "B" if "third:" in b else "TIE"
    return f'{{"reason": "scripted", "verdict": "{verdict}"}}'


@pytest.fixture
def judge() -> Iterator[MockServer]:
    with MockServer(_prefer_third) as server:
        yield server


@pytest.fixture
def bandit_ws(attached: Workspace) -> Iterator[Workspace]:
    with MockServer(tagged("third")) as third:
        attached.serving.backends.attach("support-lora@3", url=third.url, served_name="lora-v3")
        attached.serving.traffic.set("support-bot", candidate=None, sticky="header:x-user-id")
        yield attached


def _spec(judge: MockServer, **extra: Any) -> dict[str, Any]:
    return {
        "strategy": "thompson",
        "judge_model": {"provider": "openai", "name": "judge", "api_base": judge.url},
        "judge_sample": 1.0,
        "min_judged": 8,
        "steps": [60],
        "min_requests": 10,
        "min_seconds": 0,
        "min_p95_increase_ms": 1000.0,  # stub arms: CI jitter is not a latency difference
        **extra,
    }


def _round(ws: Workspace, gw: Any, start: int, n: int = 30) -> str:
    wait_for(lambda: gw.snapshot.routes["support-bot"].revision
             == ws.serving.traffic.get("support-bot").revision)  # fmt: skip
    for user in range(start, start + n):
        assert chat(gw, headers={"x-user-id": f"u{user}"}, content=f"q{user}").status_code == 200
    time.sleep(0.2)  # the request log and the mirrored answers reach the database
    ws.serving.canaries.judge("support-bot", limit=1000)
    return reconcile(ws.serving.canaries, "support-bot", actor="test")


def test_thompson_sampling_finds_the_better_candidate_and_promotes_it(
    bandit_ws: Workspace, judge: MockServer
) -> None:
    canaries = bandit_ws.serving.canaries
    status = canaries.start("support-bot", candidate=["support-lora@2", "support-lora@3"],
                            **_spec(judge))  # fmt: skip
    policy = bandit_ws.serving.traffic.get("support-bot")
    assert [c["share"] for c in policy.candidates] == [0.5, 0.5] and policy.weight == 60
    assert set(status.analysis["bandit"]["arms"]) == {"support-lora@2", "support-lora@3"}
    actions = []
    with start_gateway(bandit_ws) as gw:
        for round_ in range(15):
            actions.append(_round(bandit_ws, gw, round_ * 40, 40))
            if actions[-1] == "promote":
                break
    assert "winner" in actions and actions[-1] == "promote", actions
    final = canaries.status("support-bot")
    assert final.state == "promoted" and final.candidate == "support-lora@3"
    assert bandit_ws.models.get("support-lora@production").version == 3
    winner = next(d for d in final.decisions if d.action == "winner")
    assert winner.reason.startswith("support-lora@3 wins the bandit: best with probability")
    arms = winner.numbers["bandit"]["arms"]
    assert arms["support-lora@3"]["p_best"] >= 0.95 and arms["support-lora@3"]["win_rate"] == 1
    assert arms["support-lora@2"]["win_rate"] == 0.5
    # Shares follow P(best) above the floor.
    from llmops.serve.bandit import _shares
    from llmops.serve.canary import CanarySpec

    shares = _shares(CanarySpec(**final.spec), winner.numbers["bandit"])
    assert shares["support-lora@2"] >= 0.1 and shares["support-lora@3"] > 0.8
    from llmops.registry.events import list_events

    assert "canary.winner" in {e["type"] for e in list_events(bandit_ws.db, limit=50)}


def test_a_candidate_failing_its_requests_is_dropped_and_the_other_wins(
    attached: Workspace, judge: MockServer
) -> None:
    with MockServer(tagged("third"), fault_every=2, fault_kind="500") as broken:
        attached.serving.backends.attach("support-lora@3", url=broken.url, served_name="v3")
        attached.serving.traffic.set("support-bot", candidate=None, sticky="header:x-user-id")
        canaries = attached.serving.canaries
        canaries.start("support-bot", candidate=["support-lora@2", "support-lora@3"],
                       **_spec(judge, min_judged=10_000, steps=[50, 100]))  # fmt: skip
        actions = []
        with start_gateway(attached) as gw:
            for round_ in range(15):
                actions.append(_round(attached, gw, round_ * 40, 40))
                if "winner" in actions:
                    break
    status = canaries.status("support-bot")
    assert "winner" in actions and status.candidate == "support-lora@2", actions
    winner = next(d for d in status.decisions if d.action == "winner")
    assert "the only candidate left" in winner.reason
    dropped = winner.numbers["bandit"]["arms"]["support-lora@3"]["dropped"]
    assert dropped.startswith("error rate surely")
    policy = attached.serving.traffic.get("support-bot")
    assert policy.candidate == "support-lora@2" and policy.candidates == []


def test_p_best_follows_the_evidence() -> None:
    rng = random.Random(1)
    clear = p_best({"a": (90, 10), "b": (50, 50)}, rng=rng)
    assert clear["a"] > 0.99 and abs(sum(clear.values()) - 1) < 1e-9
    even = p_best({"a": (5, 5), "b": (5, 5), "c": (5, 5)}, rng=rng)
    assert all(0.25 < v < 0.42 for v in even.values())


def test_bad_bandit_specs_are_one_line_errors(bandit_ws: Workspace, judge: MockServer) -> None:
    canaries = bandit_ws.serving.canaries
    both = ["support-lora@2", "support-lora@3"]
    with pytest.raises(InputError, match="need --strategy thompson"):
        canaries.start("support-bot", candidate=both)
    with pytest.raises(InputError, match="thompson needs two or more candidates"):
        canaries.start("support-bot", candidate="support-lora@2", strategy="thompson")
    with pytest.raises(InputError, match="rewarded by the judge needs a judge_model"):
        canaries.start("support-bot", candidate=both, strategy="thompson")
    with pytest.raises(InputError, match="repeat a version"):
        canaries.start("support-bot", candidate=["support-lora@2", "support-lora@2"])
    with pytest.raises(InputError, match="is the stable arm"):
        canaries.start("support-bot", candidate=["support-lora@2", "support-lora@1"],
                       **_spec(judge))  # fmt: skip
    from llmops.serve.canary import parse_spec

    with pytest.raises(InputError, match="more than the whole candidate weight"):
        parse_spec({**_spec(judge, floor=0.4), "candidates": ["a@1", "a@2", "a@3"]})


def test_the_cli_starts_a_bandit_and_shows_its_arms(
    bandit_ws: Workspace,
    judge: MockServer,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.cli.test_prompts_cli import CLI

    monkeypatch.chdir(bandit_ws.root)
    cli = CLI(capsys)
    started = cli.json("canary", "start", "support-bot", "--candidate", "support-lora@2",
                       "--candidate", "support-lora@3", "--strategy", "thompson", "--steps", "40",
                       "--judge-model", json.dumps(_spec(judge)["judge_model"]))  # fmt: skip
    assert started["spec"]["candidates"] == ["support-lora@2", "support-lora@3"]
    assert started["analysis"]["bandit"]["arms"]["support-lora@3"]["share"] == 0.5
    out, _ = cli("canary", "status", "support-bot")
    assert "bandit support-lora@3: share 50%" in out
    shown, _ = cli("traffic", "show", "support-bot")
    assert "bandit arm support-lora@2: 50.0% of the candidate weight" in shown
    _, err = cli("canary", "start", "support-bot", "--candidate", "support-lora@2",
                 "--strategy", "bogus", code=2)  # fmt: skip
    assert "strategy" in err


def test_shares_move_to_the_better_candidate_before_a_winner_is_called(
    bandit_ws: Workspace, judge: MockServer
) -> None:
    canaries = bandit_ws.serving.canaries
    canaries.start("support-bot", candidate=["support-lora@2", "support-lora@3"],
                   **_spec(judge, min_judged=10_000, floor=0.2))  # fmt: skip
    with start_gateway(bandit_ws) as gw:
        assert _round(bandit_ws, gw, 0, 60) == "rebalance"
        shares = {
            c["ref"]: c["share"] for c in bandit_ws.serving.traffic.get("support-bot").candidates
        }
        assert shares["support-lora@3"] > 0.75 and shares["support-lora@2"] >= 0.2
        assert canaries.status("support-bot").last.action == "rebalance"  # type: ignore[union-attr]
        versions = [chat(gw, headers={"x-user-id": f"n{i}"}).headers["x-llmops-model-version"]
                    for i in range(100)]  # fmt: skip
    assert versions.count("support-lora@3") > versions.count("support-lora@2")


def test_a_rolled_back_bandit_leaves_no_split_behind_and_refuses_single_candidate_actions(
    bandit_ws: Workspace, judge: MockServer
) -> None:
    canaries, traffic = bandit_ws.serving.canaries, bandit_ws.serving.traffic
    both = ["support-lora@2", "support-lora@3"]
    canaries.start("support-bot", candidate=both, **_spec(judge))
    for action in ("promote", "advance"):
        with pytest.raises(
            InputError, match=f"a bandit still choosing .* no one candidate to {action}"
        ):
            getattr(canaries, action)("support-bot")
    status = canaries.status("support-bot")
    assert status.analysis["breach"] is False and status.analysis["quality"] is None
    canaries.rollback("support-bot", reason="enough")
    assert traffic.get("support-bot").candidates == []
    canaries.start("support-bot", candidate="support-lora@2", steps=[50, 100])
    with start_gateway(bandit_ws) as gw:
        versions = {chat(gw, headers={"x-user-id": f"u{i}"}).headers["x-llmops-model-version"]
                    for i in range(40)}  # fmt: skip
    assert versions == {"support-lora@1", "support-lora@2"}  # never the old bandit's @3
    canaries.rollback("support-bot")
    canaries.start("support-bot", candidate=both, **_spec(judge))
    traffic.set("support-bot", candidate="support-lora@3")  # a person takes over
    assert traffic.get("support-bot").candidates == []
    assert reconcile(canaries, "support-bot", actor="test") == "rollback"


def test_the_llmd_export_shares_a_bandits_weight_and_refuses_cohorts(
    bandit_ws: Workspace, judge: MockServer
) -> None:
    import re

    bandit_ws.serving.canaries.start("support-bot", candidate=["support-lora@2", "support-lora@3"],
                                     **_spec(judge, steps=[40]))  # fmt: skip
    out = bandit_ws.serving.export("support-bot", format="llm-d")
    assert sorted(int(w) for w in re.findall(r"weight: (\d+)", out)) == [2000, 2000, 6000]
    bandit_ws.serving.traffic.set("support-bot", cohorts=["x-tier=beta"])
    with pytest.raises(InputError, match="cannot express"):
        bandit_ws.serving.export("support-bot", format="llm-d")
