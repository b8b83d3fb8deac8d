"""The gateway against stub backends: routing and headers, the split, shadow pairs, failover,
feedback, metrics, keys and limits, and every bad input in OpenAI's error shape."""

from __future__ import annotations

import asyncio
import json
import socket
import time

import httpx
import pytest

from llmops import Workspace
from llmops.evals.testing import MockServer
from llmops.serve import Gateway
from tests.serve.conftest import chat, start_gateway, tagged, wait_for


def test_a_logical_model_is_routed_with_its_arm_and_version(
    gateway: Gateway, stable_server: MockServer
) -> None:
    r = chat(gateway, content="hello")
    assert r.status_code == 200
    assert r.headers["x-llmops-arm"] == "stable"
    assert r.headers["x-llmops-model-version"] == "support-lora@1"
    assert r.headers["x-llmops-response-id"].startswith("gw-")
    assert r.json()["choices"][0]["message"]["content"] == "stable:lora-v1:hello"
    assert stable_server.requests[-1]["model"] == "lora-v1"  # rewritten to the served name


def test_a_model_version_can_be_called_directly(gateway: Gateway) -> None:
    r = chat(gateway, model="support-lora@2")
    assert r.headers["x-llmops-arm"] == "direct"
    assert r.json()["choices"][0]["message"]["content"].startswith("candidate:lora-v2")
    assert chat(gateway, model="support-lora@production").headers["x-llmops-model-version"] == (
        "support-lora@1"
    )


def test_the_split_follows_the_weight_and_sticky_keys_stay_put(
    attached: Workspace, gateway: Gateway
) -> None:
    attached.serving.traffic.set("support-bot", weight=30, sticky="header:x-user-id")
    wait_for(lambda: gateway.snapshot.routes["support-bot"].weight == 30)
    first = {u: chat(gateway, headers={"x-user-id": f"u{u}"}).headers["x-llmops-arm"]
             for u in range(300)}  # fmt: skip
    share = list(first.values()).count("candidate") / 300
    assert 0.2 < share < 0.4
    again = {u: chat(gateway, headers={"x-user-id": f"u{u}"}).headers["x-llmops-arm"]
             for u in range(300)}  # fmt: skip
    assert again == first


def test_a_promotion_moves_the_stable_arm_on_the_next_refresh(
    attached: Workspace, gateway: Gateway
) -> None:
    attached.artifacts.alias("support-lora@2", "production")
    wait_for(lambda: gateway.snapshot.routes["support-bot"].stable.model == "support-lora@2")
    assert chat(gateway).headers["x-llmops-model-version"] == "support-lora@2"


def test_shadow_mirrors_stable_requests_and_never_returns_the_candidate(
    attached: Workspace, gateway: Gateway, candidate_server: MockServer
) -> None:
    attached.serving.traffic.set("support-bot", shadow=1.0)
    wait_for(lambda: gateway.snapshot.routes["support-bot"].shadow == 1.0)
    answers = [chat(gateway, content=f"q{i}").json()["choices"][0]["message"]["content"]
               for i in range(5)]  # fmt: skip
    assert all(a.startswith("stable:") for a in answers)
    pairs = wait_for(lambda: len(attached.serving.shadow_pairs("support-bot")) == 5
                     and attached.serving.shadow_pairs("support-bot"))  # fmt: skip
    pair = next(p for p in pairs if p["messages"][0]["content"] == "q3")
    assert pair["stable_answer"] == "stable:lora-v1:q3"
    assert pair["candidate_answer"] == "candidate:lora-v2:q3"
    assert (pair["stable_model"], pair["candidate_model"]) == ("support-lora@1", "support-lora@2")
    assert len(candidate_server.requests) == 5


def test_a_candidate_that_is_down_fails_over_to_stable_as_a_candidate_error(
    attached: Workspace,
) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        dead = s.getsockname()[1]
    attached.serving.backends.attach("support-lora@3", url=f"http://127.0.0.1:{dead}/v1",
                                     served_name="lora-v3")  # fmt: skip
    attached.serving.traffic.set("support-bot", candidate="support-lora@3", weight=100)
    with start_gateway(attached) as gw:
        r = chat(gw)
        assert r.status_code == 200
        assert r.headers["x-llmops-arm"] == "stable"
        assert r.json()["choices"][0]["message"]["content"].startswith("stable:")
    stats = attached.serving.show("support-bot").arms
    assert stats["candidate"].errors == 1 and stats["candidate"].failovers == 1
    assert "stable" not in stats  # judged on its own traffic only


def test_a_slow_candidate_fails_over_after_the_candidate_timeout(attached: Workspace) -> None:
    with MockServer(tagged("slow"), latency_s=5) as slow:
        attached.serving.backends.attach("support-lora@3", url=slow.url, served_name="slow")
        attached.serving.traffic.set("support-bot", candidate="support-lora@3", weight=100)
        with start_gateway(attached, candidate_timeout_s=0.3) as gw:
            started = time.monotonic()
            r = chat(gw)
            assert time.monotonic() - started < 3
        assert r.json()["choices"][0]["message"]["content"].startswith("stable:")
    assert attached.serving.show("support-bot").arms["candidate"].errors == 1


def test_a_candidate_answering_500_fails_over(attached: Workspace) -> None:
    with MockServer(fault_every=1, fault_kind="500") as broken:
        attached.serving.backends.attach("support-lora@3", url=broken.url, served_name="x")
        attached.serving.traffic.set("support-bot", candidate="support-lora@3", weight=100)
        with start_gateway(attached) as gw:
            assert chat(gw).headers["x-llmops-arm"] == "stable"


def test_when_stable_is_down_too_the_client_gets_a_502_in_openai_shape(
    serve_ws: Workspace,
) -> None:
    with MockServer(fault_every=1, fault_kind="500") as broken:
        serve_ws.serving.backends.attach("support-lora@1", url=broken.url, served_name="x")
        serve_ws.serving.traffic.set("bot", stable="support-lora@1")
        with start_gateway(serve_ws) as gw:
            r = chat(gw, model="bot")
    assert r.status_code == 502
    assert r.json()["error"]["code"] == "backend_unavailable"
    assert r.headers["x-llmops-arm"] == "stable"


def test_streaming_is_relayed_chunk_by_chunk(gateway: Gateway) -> None:
    with httpx.stream("POST", f"{gateway.url}/chat/completions", timeout=30, json={
        "model": "support-bot", "stream": True,
        "messages": [{"role": "user", "content": "one two three"}]}) as r:  # fmt: skip
        assert r.headers["x-llmops-arm"] == "stable"
        assert r.headers["content-type"].startswith("text/event-stream")
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    text = "".join(json.loads(e)["choices"][0]["delta"].get("content") or ""
                   for e in events[:-1])  # fmt: skip
    assert text == "stable:lora-v1:one two three"


def test_a_streaming_client_that_disconnects_cancels_the_backend_request(
    serve_ws: Workspace,
) -> None:
    with MockServer(tagged("s"), chunk_delay_s=0.2) as slow:
        serve_ws.serving.backends.attach("support-lora@1", url=slow.url, served_name="x")
        serve_ws.serving.traffic.set("bot", stable="support-lora@1")
        with start_gateway(serve_ws) as gw:
            words = " ".join(f"w{i}" for i in range(100))

            async def read_a_little() -> None:
                async with httpx.AsyncClient(timeout=30) as client, client.stream(
                    "POST", f"{gw.url}/chat/completions",
                    json={"model": "bot", "stream": True,
                          "messages": [{"role": "user", "content": words}]},
                ) as r:  # fmt: skip
                    async for _ in r.aiter_bytes():
                        break  # hang up after the first chunk

            asyncio.run(read_a_little())
            wait_for(lambda: slow.state.cancelled == 1, timeout_s=10)
    stats = serve_ws.serving.show("bot").arms["stable"]
    assert stats.requests == 1 and stats.errors == 0


def test_feedback_is_stored_with_the_arm_that_answered(
    attached: Workspace, gateway: Gateway
) -> None:
    response_id = chat(gateway).headers["x-llmops-response-id"]
    url = f"{gateway.url}/feedback"
    ok = httpx.post(url, json={"response_id": response_id, "thumbs": "up", "comment": "good"})
    assert ok.status_code == 200 and ok.json()["arm"] == "stable"
    assert httpx.post(url, json={"response_id": response_id, "score": 0.5}).status_code == 200
    bad = httpx.post(url, json={"response_id": response_id, "score": 7})
    assert bad.status_code == 400 and bad.json()["error"]["code"] == "invalid_score"
    missing = httpx.post(url, json={"response_id": "gw-nope", "score": 1})
    assert missing.status_code == 404
    second = chat(gateway).headers["x-llmops-response-id"]
    assert httpx.post(url, json={"response_id": second, "thumbs": "down"}).status_code == 200
    stats = wait_for(lambda: attached.serving.show("support-bot").arms["stable"].feedback == 2
                     and attached.serving.show("support-bot").arms["stable"])  # fmt: skip
    assert stats.feedback_mean == 0.25  # the first answer's latest vote (0.5) and 0


def test_metrics_models_and_health(gateway: Gateway) -> None:
    chat(gateway)
    chat(gateway, model="nope")
    text = httpx.get(f"{gateway.url.removesuffix('/v1')}/metrics").text
    assert ('llmops_gateway_requests_total{logical="support-bot",arm="stable",'
            'model="support-lora@1",code="200"} 1') in text  # fmt: skip
    assert (
        'llmops_gateway_request_duration_seconds_bucket{logical="support-bot",arm="stable",le="+Inf"} 1'
        in text
    )
    assert 'llmops_gateway_rejected_total{reason="unknown_model"} 1' in text
    models = httpx.get(f"{gateway.url}/models").json()["data"]
    bot = next(m for m in models if m["id"] == "support-bot")
    assert bot["llmops"] == {"direct": False, "stable": "support-lora@1",
                             "candidate": "support-lora@2"}  # fmt: skip
    health = httpx.get(f"{gateway.url.removesuffix('/v1')}/healthz")
    assert health.status_code == 200 and health.json()["ok"] is True


def test_the_kill_switch_reaches_the_gateway(attached: Workspace, gateway: Gateway) -> None:
    attached.serving.traffic.set("support-bot", weight=100)
    wait_for(lambda: gateway.snapshot.routes["support-bot"].weight == 100)
    assert chat(gateway).headers["x-llmops-arm"] == "candidate"
    attached.serving.traffic.kill("support-bot")
    wait_for(lambda: gateway.snapshot.routes["support-bot"].killed)
    assert {chat(gateway).headers["x-llmops-arm"] for _ in range(10)} == {"stable"}


def test_a_restarted_replica_recovers_its_state_from_the_database(attached: Workspace) -> None:
    attached.serving.traffic.set("support-bot", weight=100)
    key = attached.serving.keys.create("ci").secret
    auth = {"Authorization": f"Bearer {key}"}
    with start_gateway(attached) as gw:
        assert chat(gw, headers=auth).headers["x-llmops-arm"] == "candidate"
    with start_gateway(attached) as again:
        assert chat(again).status_code == 401
        assert chat(again, headers=auth).headers["x-llmops-arm"] == "candidate"
    assert attached.serving.show("support-bot").arms["candidate"].requests == 2


# -- bad input ----------------------------------------------------------------------------


def test_unknown_models_get_404_in_openai_shape(gateway: Gateway) -> None:
    r = chat(gateway, model="nobody")
    assert r.status_code == 404
    assert r.json()["error"] == {"message": "the model 'nobody' does not exist",
                                 "type": "invalid_request_error", "param": None,
                                 "code": "model_not_found"}  # fmt: skip


@pytest.mark.parametrize("body", [b"{not json", b"[]", b'{"model": "support-bot"}',
                                  b'{"model": 3, "messages": [{}]}',
                                  b'{"model": "support-bot", "messages": []}',
                                  b"\xff\xfe"])  # fmt: skip
def test_malformed_requests_get_400(gateway: Gateway, body: bytes) -> None:
    r = httpx.post(f"{gateway.url}/chat/completions", content=body,
                   headers={"Content-Type": "application/json"})  # fmt: skip
    assert r.status_code == 400
    assert r.json()["error"]["type"] == "invalid_request_error"


def test_huge_requests_get_413(attached: Workspace) -> None:
    with start_gateway(attached, max_request_bytes=10_000) as gw:
        r = chat(gw, content="x" * 20_000)
    assert r.status_code == 413 and r.json()["error"]["code"] == "request_too_large"


def test_keys_are_required_once_one_exists_and_scoped(attached: Workspace) -> None:
    keys = attached.serving.keys
    scoped = keys.create("bot-only", models=["support-bot"]).secret
    other = keys.create("other", models=["other-bot"]).secret
    with start_gateway(attached) as gw:
        missing = chat(gw)
        assert missing.status_code == 401 and missing.json()["error"]["code"] == "invalid_api_key"
        assert chat(gw, headers={"Authorization": "Bearer llmops-wrong"}).status_code == 401
        assert chat(gw, headers={"Authorization": f"Bearer {scoped}"}).status_code == 200
        denied = chat(gw, headers={"Authorization": f"Bearer {other}"})
        assert denied.status_code == 403
        listed = httpx.get(f"{gw.url}/models", headers={"Authorization": f"Bearer {scoped}"})
        assert [m["id"] for m in listed.json()["data"]] == ["support-bot"]
    stored = {k.id: k for k in keys.list()}
    assert all(scoped not in json.dumps(k.to_json()) for k in stored.values())


def test_a_revoked_key_stops_working(attached: Workspace) -> None:
    created = attached.serving.keys.create("temp")
    keep = attached.serving.keys.create("keep")
    with start_gateway(attached) as gw:
        auth = {"Authorization": f"Bearer {created.secret}"}
        assert chat(gw, headers=auth).status_code == 200
        attached.serving.keys.revoke(created.key.id)
        wait_for(lambda: len(gw.snapshot.keys) == 1)
        assert chat(gw, headers=auth).status_code == 401
        assert chat(gw, headers={"Authorization": f"Bearer {keep.secret}"}).status_code == 200


def test_over_the_rate_limit_gets_429_with_retry_after(attached: Workspace) -> None:
    secret = attached.serving.keys.create("slow", rate="3/min").secret
    auth = {"Authorization": f"Bearer {secret}"}
    with start_gateway(attached) as gw:
        codes = [chat(gw, headers=auth).status_code for _ in range(3)]
        limited = chat(gw, headers=auth)
    assert codes == [200, 200, 200]
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.json()["error"]["code"] == "rate_limit_exceeded"


def test_a_taken_port_and_bad_settings_are_one_line_errors(
    attached: Workspace, gateway: Gateway
) -> None:
    from llmops.errors import InputError, ServingError

    with pytest.raises(ServingError, match=f"cannot listen on 127.0.0.1:{gateway.port}"):
        start_gateway(attached, port=gateway.port)
    with pytest.raises(InputError, match="refresh_s must be a positive"):
        start_gateway(attached, refresh_s=0)
    with pytest.raises(InputError, match="below 1024"):
        start_gateway(attached, max_request_bytes=10)


def test_a_candidate_backend_that_does_not_serve_the_name_fails_over(attached: Workspace) -> None:
    with MockServer(fault_every=1, fault_kind="404") as missing:  # the adapter was unloaded
        attached.serving.backends.attach("support-lora@3", url=missing.url, served_name="gone")
        attached.serving.traffic.set("support-bot", candidate="support-lora@3", weight=100)
        with start_gateway(attached) as gw:
            r = chat(gw)
    assert r.status_code == 200 and r.headers["x-llmops-arm"] == "stable"
    assert attached.serving.show("support-bot").arms["candidate"].errors == 1


def test_streamed_usage_is_counted(gateway: Gateway, attached: Workspace) -> None:
    with httpx.stream("POST", f"{gateway.url}/chat/completions", timeout=30, json={
        "model": "support-bot", "stream": True, "stream_options": {"include_usage": True},
        "messages": [{"role": "user", "content": "a b c"}]}) as r:  # fmt: skip
        r.read()
    line = 'llmops_gateway_tokens_total{logical="support-bot",arm="stable",kind="prompt"} 3'
    wait_for(lambda: line in gateway.metrics.render())  # recorded once the stream has ended
