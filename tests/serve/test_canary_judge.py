"""Canaries judged on answer quality: mirrored requests judged pairwise (a scripted judge on
loopback), the win rate's sequential test, shadow first, feedback, and a judge that is down or
says nothing."""

from __future__ import annotations

import itertools
import json
import random
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from llmops import Workspace
from llmops.errors import InputError
from llmops.evals.testing import MockServer
from llmops.serve.analysis import win_rate
from llmops.serve.controller import reconcile
from tests.serve.conftest import chat, start_gateway, wait_for

QUIET = {"min_p95_increase_ms": 1000.0}
"""Stub arms answer in about a millisecond, so a loaded CI box's jitter can look like a
latency difference: tests about other things keep latency out of it."""


def judge_preferring(tag: str | None) -> Callable[[dict[str, Any]], str]:
    """A pairwise judge that prefers the answer starting with ``tag`` (None: always a tie)."""

    def respond(body: dict[str, Any]) -> str:
        prompt = body["messages"][-1]["content"]
        a = re.search(r"Answer A:\n(.*?)\n\nAnswer B:", prompt, re.S)
        assert a is not None, prompt
        verdict = "TIE" if tag is None else ("A" if f"{tag}:" in a.group(1) else "B")
        return f'Thinking.\n{{"reason": "scripted", "verdict": "{verdict}"}}'

    return respond


@pytest.fixture
def judged_ws(attached: Workspace) -> Workspace:
    attached.serving.traffic.set("support-bot", candidate=None, sticky="header:x-user-id")
    return attached


def _judge_spec(server: MockServer) -> dict[str, Any]:
    return {"provider": "openai", "name": "judge", "api_base": server.url}


def _traffic(gw: Any, n: int, *, start: int = 0) -> None:
    for user in range(start, start + n):
        assert chat(gw, headers={"x-user-id": f"u{user}"}, content=f"q{user}").status_code == 200


def _pairs(ws: Workspace) -> int:
    return len(ws.serving.shadow_pairs("support-bot", limit=10_000))


def _judge_and_run(ws: Workspace) -> str:
    wait_for(lambda: ws.serving.canaries.judge("support-bot", limit=500) >= 0)
    return reconcile(ws.serving.canaries, "support-bot", actor="test")


@pytest.fixture
def worse_judge() -> Iterator[MockServer]:
    with MockServer(judge_preferring("stable")) as s:
        yield s


@pytest.fixture
def better_judge() -> Iterator[MockServer]:
    with MockServer(judge_preferring("candidate")) as s:
        yield s


def test_a_candidate_judged_worse_is_rolled_back_on_its_win_rate(
    judged_ws: Workspace, worse_judge: MockServer
) -> None:
    canaries = judged_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[50, 100],
                   min_requests=10_000, judge_model=_judge_spec(worse_judge),
                   judge_sample=1.0)  # fmt: skip
    assert judged_ws.serving.traffic.get("support-bot").shadow == 1.0
    actions = []
    with start_gateway(judged_ws) as gw:
        for round_ in range(8):
            _traffic(gw, 20, start=round_ * 20)
            wait_for(lambda n=round_: _pairs(judged_ws) >= 20 * (n + 1))
            actions.append(_judge_and_run(judged_ws))
            if actions[-1] == "rollback":
                break
    assert actions[-1] == "rollback" and "hold" in actions
    status = canaries.status("support-bot")
    assert status.state == "rolled_back" and status.reason.startswith("answers judged worse")
    quality = status.decisions[-1].numbers["quality"]
    assert quality["wins"] == 0 and quality["losses"] == quality["judged"] >= 40
    assert quality["position_consistency"] == 1.0 and quality["verdict"] == "worse"
    assert quality["win_rate"]["high"] < 0.45
    # Both directions were mirrored: stable answers to the candidate and candidate answers back.
    pairs = judged_ws.serving.shadow_pairs("support-bot", limit=1000)
    assert {p["served"] for p in pairs} == {"stable", "candidate"}
    served_by_candidate = next(p for p in pairs if p["served"] == "candidate")
    assert served_by_candidate["stable_answer"].startswith("stable:")
    assert served_by_candidate["candidate_answer"].startswith("candidate:")
    assert {p["verdict"] for p in pairs if p["verdict"]} == {"stable"}
    # Each judged pair was asked in both orders.
    assert len(worse_judge.requests) == 2 * quality["judged"]


def test_a_candidate_judged_better_walks_the_steps_and_says_so(
    judged_ws: Workspace, better_judge: MockServer
) -> None:
    canaries = judged_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[50, 100], min_requests=10,
                   min_seconds=0, min_judged=20, judge_model=_judge_spec(better_judge),
                   judge_sample=1.0)  # fmt: skip
    with start_gateway(judged_ws) as gw:
        _traffic(gw, 40)  # the stable baseline before the 100% step
        actions = []
        for round_ in range(10):
            wait_for(lambda: gw.snapshot.routes["support-bot"].weight
                     == judged_ws.serving.traffic.get("support-bot").weight)  # fmt: skip
            _traffic(gw, 30, start=100 + round_ * 30)
            time.sleep(0.15)
            actions.append(_judge_and_run(judged_ws))
            if actions[-1] == "promote":
                break
    assert actions[-1] == "promote", actions
    status = canaries.status("support-bot")
    assert status.state == "promoted" and "judged: better than stable" in status.reason
    assert judged_ws.models.get("support-lora@production").version == 2


def test_too_few_judged_pairs_hold_the_step(judged_ws: Workspace, better_judge: MockServer) -> None:
    canaries = judged_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[50, 100], min_requests=5,
                   min_seconds=0, min_judged=1000, judge_model=_judge_spec(better_judge),
                   judge_sample=1.0)  # fmt: skip
    with start_gateway(judged_ws) as gw:
        _traffic(gw, 40)
        wait_for(lambda: _pairs(judged_ws) >= 40)
    assert _judge_and_run(judged_ws) == "hold"
    last = canaries.status("support-bot").last
    assert last is not None and "/1000 judged pairs" in last.reason


def test_an_aa_judge_is_rarely_a_false_alarm_however_often_it_is_looked_at() -> None:
    rng = random.Random(11)
    alpha, runs, alarms, min_win = 0.05 / 3, 300, 0, 0.45
    for _ in range(runs):
        wins = ties = n = 0
        for _ in range(100):  # 100 looks, 10 judged pairs between looks
            for _ in range(10):
                r = rng.random()
                wins += r < 0.4
                ties += 0.4 <= r < 0.6
                n += 1
            if win_rate(wins, ties, n, alpha=alpha).high < min_win:
                alarms += 1
                break
    assert alarms / runs <= alpha
    # ... while a clear loser (a 25% win rate) is caught within a few hundred pairs.
    assert win_rate(50, 0, 200, alpha=alpha).high < min_win


def test_shadow_first_stops_a_losing_candidate_before_any_live_weight(
    judged_ws: Workspace, worse_judge: MockServer
) -> None:
    canaries = judged_ws.serving.canaries
    status = canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[10, 100],
                            shadow_first=12, judge_model=_judge_spec(worse_judge),
                            judge_sample=1.0)  # fmt: skip
    assert (status.step, status.weight) == (-1, 0)
    with start_gateway(judged_ws) as gw:
        _traffic(gw, 5)
        wait_for(lambda: _pairs(judged_ws) >= 5)
        assert _judge_and_run(judged_ws) == "hold"
        _traffic(gw, 10, start=5)
        wait_for(lambda: _pairs(judged_ws) >= 15)
    assert _judge_and_run(judged_ws) == "rollback"
    status = canaries.status("support-bot")
    assert status.state == "rolled_back" and status.reason.startswith("lost in shadow")
    arms = judged_ws.serving.show("support-bot").arms
    assert "candidate" not in arms and arms["shadow"].requests >= 15  # it never answered a user


def test_shadow_first_starts_the_live_steps_for_a_candidate_that_holds_its_own(
    judged_ws: Workspace,
) -> None:
    with MockServer(judge_preferring(None)) as tie_judge:  # every pair a tie: win rate 0.5
        canaries = judged_ws.serving.canaries
        canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[10, 100],
                       shadow_first=10, judge_model=_judge_spec(tie_judge))  # fmt: skip
        assert judged_ws.serving.traffic.get("support-bot").shadow == 0.2
        judged_ws.serving.traffic.set("support-bot", shadow=1.0, by_canary=True)
        with start_gateway(judged_ws) as gw:
            _traffic(gw, 12)
            wait_for(lambda: _pairs(judged_ws) >= 10)
        assert _judge_and_run(judged_ws) == "advance"
    status = canaries.status("support-bot")
    assert (status.step, status.weight, status.state) == (0, 10, "running")
    assert status.last is not None and status.last.reason.startswith("shadow passed: win rate 0.50")


def test_a_judge_that_is_down_leaves_pairs_pending_and_one_without_verdicts_marks_them(
    judged_ws: Workspace,
) -> None:
    canaries = judged_ws.serving.canaries
    with MockServer(lambda body: "I refuse to give a verdict.") as mute:
        canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[50, 100],
                       judge_model=_judge_spec(mute), judge_sample=1.0)  # fmt: skip
        with start_gateway(judged_ws) as gw:
            _traffic(gw, 6)
            wait_for(lambda: _pairs(judged_ws) >= 6)
        spec = judged_ws.serving.canaries.row("support-bot").spec
        down = dict(spec, judge_model={"provider": "openai", "name": "j",
                                       "api_base": "http://127.0.0.1:9/v1"})  # fmt: skip
        _set_spec(judged_ws, down)
        from llmops.errors import ServingError

        with pytest.raises(ServingError, match="did not answer"):  # nothing judged or marked
            canaries.judge("support-bot")
        assert canaries.status("support-bot").analysis["quality"]["pending"] >= 6
        _set_spec(judged_ws, spec)
        assert canaries.judge("support-bot") >= 6
        quality = canaries.status("support-bot").analysis["quality"]
    assert quality["no_verdict"] >= 6 and quality["judged"] == 0 and quality["pending"] == 0
    assert canaries.judge("support-bot") == 0  # marked pairs are not judged again
    pair = judged_ws.serving.shadow_pairs("support-bot", limit=1)[0]
    assert pair["judge_error"] and pair["verdict"] is None


def _set_spec(ws: Workspace, spec: dict[str, Any]) -> None:
    from llmops.db.models import CanaryRow

    with ws.db.write() as session:
        row = session.get(CanaryRow, "support-bot")
        assert row is not None
        row.spec = spec
        session.add(row)


def test_the_gateway_judges_and_rolls_back_on_its_own(
    judged_ws: Workspace, worse_judge: MockServer
) -> None:
    judged_ws.serving.canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[50, 100],
                                     min_requests=10_000, judge_model=_judge_spec(worse_judge),
                                     judge_sample=1.0)  # fmt: skip
    with start_gateway(judged_ws, canary_interval_s=0.2) as gw:
        user = 0
        while judged_ws.serving.canaries.row("support-bot").state == "running" and user < 1000:
            _traffic(gw, 10, start=user)
            user += 10
        wait_for(lambda: gw.snapshot.routes["support-bot"].killed)
    status = judged_ws.serving.canaries.status("support-bot")
    assert status.state == "rolled_back" and status.reason.startswith("answers judged worse")
    assert status.decisions[-1].actor.startswith("controller:")


def test_feedback_below_stable_rolls_the_candidate_back(judged_ws: Workspace) -> None:
    canaries = judged_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[50, 100],
                   min_requests=10_000, max_feedback_drop=0.1)  # fmt: skip
    with start_gateway(judged_ws) as gw:
        for user in range(160):
            answer = chat(gw, headers={"x-user-id": f"u{user}"})
            thumbs = "down" if answer.headers["x-llmops-arm"] == "candidate" else "up"
            vote = {"response_id": answer.headers["x-llmops-response-id"], "thumbs": thumbs}
            assert httpx.post(f"{gw.url}/feedback", json=vote).status_code == 200
        wait_for(lambda: canaries.status("support-bot").arms["candidate"].feedback >= 60)
    assert reconcile(canaries, "support-bot", actor="test") == "rollback"
    status = canaries.status("support-bot")
    assert status.reason.startswith("feedback:") and status.state == "rolled_back"


def test_bad_judge_specs_are_one_line_errors(judged_ws: Workspace) -> None:
    canaries = judged_ws.serving.canaries
    with pytest.raises(InputError, match="shadow_first needs a judge_model"):
        canaries.start("support-bot", candidate="support-lora@2", shadow_first=10)
    with pytest.raises(InputError, match=r"judge_model: .*needs api_base"):
        canaries.start("support-bot", candidate="support-lora@2",
                       judge_model={"provider": "openai", "name": "j"})  # fmt: skip
    with pytest.raises(InputError, match="api_base carries credentials"):
        canaries.start("support-bot", candidate="support-lora@2",
                       judge_model={"name": "j", "api_base": "http://u:sk-1@h/v1"})  # fmt: skip
    with pytest.raises(InputError, match="likelihood' needs token log-probabilities"):
        canaries.start("support-bot", candidate="support-lora@2", judge_method="likelihood",
                       judge_model={"provider": "litellm", "name": "gpt-4o-mini"})  # fmt: skip
    canaries.start("support-bot", candidate="support-lora@2")
    with pytest.raises(InputError, match="has no judge"):
        canaries.judge("support-bot")


def test_the_cli_takes_judge_flags_and_a_spec_file(
    judged_ws: Workspace,
    better_judge: MockServer,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.cli.test_prompts_cli import CLI

    monkeypatch.chdir(judged_ws.root)
    cli = CLI(capsys)
    spec = tmp_path / "canary.yaml"
    spec.write_text("steps: [10, 100]\nmin-win-rate: 0.4\nmin_requests: 7\n")
    out = cli.json("canary", "start", "support-bot", "--candidate", "support-lora@2", "--spec",
                   str(spec), "--min-requests", "9", "--min-stable-requests", "7",
                   "--min-p95-increase-ms", "2.5", "--judge-model",
                   json.dumps(_judge_spec(better_judge)))  # fmt: skip
    assert out["spec"]["steps"] == [10, 100] and out["spec"]["min_win_rate"] == 0.4
    assert out["spec"]["min_requests"] == 9  # the flag beats the file
    assert (out["spec"]["min_stable_requests"], out["spec"]["min_p95_increase_ms"]) == (7, 2.5)
    assert out["spec"]["judge_model"]["api_base"] == better_judge.url
    assert out["analysis"]["quality"]["judged"] == 0
    assert cli.json("canary", "judge", "support-bot")["judged"] == 0
    status, _ = cli("canary", "status", "support-bot")
    assert "judge: no pairs judged yet" in status
    judged_ws.serving.canaries.rollback("support-bot")
    _, err = cli("canary", "start", "support-bot", "--candidate", "support-lora@2",
                 "--judge-model", "{nope", code=2)  # fmt: skip
    assert "--judge-model is not JSON" in err and len(err.strip().splitlines()) <= 2
    spec.write_text("steps: [10, 100\n")
    _, err = cli("canary", "start", "support-bot", "--candidate", "support-lora@2", "--spec",
                 str(spec), code=2)  # fmt: skip
    assert "is not valid YAML (line" in err


def test_the_flagger_check_passes_while_the_canary_holds_up_and_fails_once_rolled_back(
    judged_ws: Workspace,
) -> None:
    canaries = judged_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[50, 100])
    with start_gateway(judged_ws) as gw:
        url = f"{gw.url.removesuffix('/v1')}/canary/support-bot/check"
        ok = httpx.post(url, json={"name": "support-bot", "phase": "Progressing"})
        assert ok.status_code == 200 and ok.json()["ok"] is True
        assert httpx.get(url).status_code == 200
        canaries.rollback("support-bot", reason="bad answers")
        failed = httpx.get(url)
        assert failed.status_code == 412
        assert failed.json() == {"ok": False, "state": "rolled_back", "step": 0, "weight": 0.0,
                                 "reason": "bad answers"}  # fmt: skip
        assert httpx.get(url.replace("support-bot", "nobody")).status_code == 404
        analysis = httpx.get(url.replace("/check", "/analysis")).json()["analysis"]
    assert analysis["breach"] is False and analysis["breach_reason"] is None


def test_a_hostile_request_is_marked_alone_and_an_unreachable_judge_is_said_and_bounded(
    judged_ws: Workspace, better_judge: MockServer
) -> None:
    from llmops.errors import ServingError
    from llmops.serve.judge import MAX_ATTEMPTS

    canaries = judged_ws.serving.canaries
    canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[50, 100],
                   judge_model=_judge_spec(better_judge), judge_sample=1.0)  # fmt: skip
    with start_gateway(judged_ws) as gw:
        assert chat(gw, content="&" * 300_000, headers={"x-user-id": "evil"}).status_code == 200
        _traffic(gw, 6)
        wait_for(lambda: _pairs(judged_ws) >= 7)
    assert canaries.judge("support-bot", limit=100) >= 7
    quality = canaries.status("support-bot").analysis["quality"]
    assert quality["pending"] == 0 and quality["judged"] >= 6  # the huge one did not block
    spec = canaries.row("support-bot").spec
    _set_spec(judged_ws, dict(spec, judge_model={"provider": "openai", "name": "j",
                                                 "api_base": "http://127.0.0.1:9/v1"}))  # fmt: skip
    with start_gateway(judged_ws) as gw:
        _traffic(gw, 3, start=100)
        wait_for(lambda: _pairs(judged_ws) >= 10)
    for _ in range(MAX_ATTEMPTS - 1):
        with pytest.raises(ServingError, match=r"the judge http://127.0.0.1:9/v1 did not answer"):
            canaries.judge("support-bot")
    assert canaries.judge("support-bot") >= 3  # then marked: they never block newer pairs
    pair = judged_ws.serving.shadow_pairs("support-bot", limit=1)[0]
    assert pair["judge_error"].startswith(f"the judge failed {MAX_ATTEMPTS} times")


def test_holds_are_recorded_once_per_kind_not_per_estimate(judged_ws: Workspace) -> None:
    with MockServer(lambda body: "bad", fault_every=4, fault_kind="500") as flaky:
        judged_ws.serving.backends.attach("support-lora@3", url=flaky.url, served_name="flaky")
        canaries = judged_ws.serving.canaries
        canaries.start("support-bot", candidate="support-lora@3", steps=[50, 100],
                       min_requests=10_000, min_stable_requests=5)  # fmt: skip
        with start_gateway(judged_ws) as gw:
            for round_ in range(4):
                _traffic(gw, 12, start=round_ * 12)
                time.sleep(0.15)
                reconcile(canaries, "support-bot", actor="test")
    from llmops.serve.controller import _same_hold

    decisions = canaries.status("support-bot").decisions
    holds = [d.reason for d in decisions if d.action == "hold"]
    assert holds and len(holds) < 4  # four looks, never a hold row per look
    for a, b in itertools.pairwise(decisions):
        assert not (a.action == b.action == "hold" and _same_hold(a.reason, b.reason)), holds


def test_cli_spec_mistakes_are_one_line(
    judged_ws: Workspace,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from tests.cli.test_prompts_cli import CLI

    monkeypatch.chdir(judged_ws.root)
    cli = CLI(capsys)
    spec = tmp_path / "c.yaml"
    spec.write_bytes(b"steps: [\xff\xfe]\n")
    _, err = cli("canary", "start", "support-bot", "--candidate", "support-lora@2", "--spec",
                 str(spec), code=2)  # fmt: skip
    assert "is not UTF-8 text" in err
    spec.write_text("candidates: [support-lora@2, support-lora@3]\nstrategy: thompson\n")
    _, err = cli("canary", "start", "support-bot", "--candidate", "support-lora@2", "--spec",
                 str(spec), code=2)  # fmt: skip
    assert "given on the command line" in err
    _, err = cli("canary", "start", "support-bot", "--candidate", " , ", code=2)
    assert "--candidate names no model version" in err
    _, err = cli("canary", "start", "support-bot", "--candidate", "support-lora@2",
                 "--shadow-first", "3", code=2)  # fmt: skip
    assert "Value error" not in err and "shadow_first needs a judge_model" in err


def test_a_judge_echoing_its_key_in_an_error_leaves_no_key_in_the_registry(
    judged_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import threading

    from aiohttp import web

    secret = "0123456789abcdef0123456789abcdefXY"
    monkeypatch.setenv("CANARY_JUDGE_TOKEN", secret)

    async def refuse(request: web.Request) -> web.Response:
        token = request.headers.get("Authorization", "")
        return web.json_response({"error": {"message": f"Incorrect API key: {token}"}}, status=401)

    loop = asyncio.new_event_loop()
    app = web.Application()
    app.router.add_post("/v1/chat/completions", refuse)
    runner = web.AppRunner(app)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        canaries = judged_ws.serving.canaries
        canaries.start("support-bot", candidate="support-lora@2", **QUIET, steps=[50, 100],
                       judge_sample=1.0, judge_model={"provider": "openai", "name": "j",
                       "api_base": f"http://127.0.0.1:{port}/v1",
                       "api_key_env": "CANARY_JUDGE_TOKEN"})  # fmt: skip
        with start_gateway(judged_ws) as gw:
            _traffic(gw, 2)
            wait_for(lambda: _pairs(judged_ws) >= 2)
        from llmops.errors import LLMOpsError

        for _ in range(3):
            try:
                canaries.judge("support-bot")
            except LLMOpsError as exc:
                assert secret not in str(exc)
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()
    stored = json.dumps(judged_ws.serving.shadow_pairs("support-bot", limit=100))
    assert "Incorrect API key" in stored and secret not in stored


def test_spec_files_refuse_booleans_and_merge_a_canary_key(
    judged_ws: Workspace,
    tmp_path: Any,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from llmops._redact import url_credentials
    from tests.cli.test_prompts_cli import CLI

    assert url_credentials("http://user:hunter2@[::1/v1")  # unreadable: counted as holding some
    monkeypatch.chdir(judged_ws.root)
    cli = CLI(capsys)
    spec = tmp_path / "c.yaml"
    spec.write_text("min_requests: true\n")
    _, err = cli("canary", "start", "support-bot", "--candidate", "support-lora@2", "--spec",
                 str(spec), code=2)  # fmt: skip
    assert "min_requests must be a number" in err
    spec.write_text("canary: {steps: [5, 100]}\nmin_requests: 7\n")
    out = cli.json("canary", "start", "support-bot", "--candidate", "support-lora@2", "--spec",
                   str(spec))  # fmt: skip
    assert out["spec"]["steps"] == [5, 100] and out["spec"]["min_requests"] == 7
