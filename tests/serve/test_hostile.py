"""Hostile and careless input to serving, each found by a review and kept fixed here."""

from __future__ import annotations

import httpx
import pytest
from sqlalchemy import select

from llmops import Workspace
from llmops.db.models import ServeRequest
from llmops.errors import InputError, NotFoundError
from llmops.evals.testing import MockServer
from llmops.serve import Gateway
from llmops.serve.backends import check_url
from llmops.serve.metrics import RequestLog
from llmops.serve.proxy import _count
from tests.serve.conftest import chat, start_gateway, tagged, wait_for


def _row(response_id: str, **extra: object) -> dict[str, object]:
    from llmops.db.timestamps import utcnow

    return {"response_id": response_id, "logical": "bot", "arm": "stable", "model": "m@1",
            "at": utcnow(), "status": 200, "error": False, "failover": False, "latency_ms": 1.0,
            "ttft_ms": None, "prompt_tokens": 1, "completion_tokens": 1, "replica": "r",
            "key_id": None, **extra}  # fmt: skip


def test_one_bad_row_never_takes_the_batch_with_it(serve_ws: Workspace) -> None:
    log = RequestLog(serve_ws.db, flush_s=60)
    for i in range(5):
        log.add(ServeRequest, _row(f"gw-{i}"))
    log.add(ServeRequest, _row("gw-bad", prompt_tokens=10**30))
    log.close()
    with serve_ws.db.read() as session:
        ids = sorted(session.scalars(select(ServeRequest.response_id)).all())
    assert ids == [f"gw-{i}" for i in range(5)] and log.dropped == 1


def test_absurd_token_counts_from_a_backend_are_not_believed() -> None:
    assert [_count(v) for v in (12, 10**30, -5, 1e300, True, "7", None)] == [12, 0, 0, 0, 0, 0, 0]


@pytest.mark.parametrize("body", [
    b'{"model": "support-bot", "messages": [{"role": "user", "content": ' + b"[" * 100_000 + b"]" * 100_000 + b"}]}",
    b'{"model": "support-bot", "messages": [1, 2, 3]}',
    b'{"model": "support-bot", "messages": [{"content": "no role"}]}',
    b'{"model": "support-bot", "messages": [{"role": "user", "content": NaN}]}',
])  # fmt: skip
def test_hostile_bodies_are_400_and_never_reach_a_backend(
    gateway: Gateway, stable_server: MockServer, body: bytes
) -> None:
    r = httpx.post(f"{gateway.url}/chat/completions", content=body,
                   headers={"Content-Type": "application/json"}, timeout=30)  # fmt: skip
    assert r.status_code == 400 and r.json()["error"]["type"] == "invalid_request_error"
    assert stable_server.requests == []


def test_a_client_that_gives_up_is_counted(serve_ws: Workspace) -> None:
    with MockServer(tagged("slow"), latency_s=3) as slow:
        serve_ws.serving.backends.attach("support-lora@1", url=slow.url, served_name="x")
        serve_ws.serving.traffic.set("bot", stable="support-lora@1")
        with start_gateway(serve_ws) as gw:
            with pytest.raises(httpx.TimeoutException):
                httpx.post(
                    f"{gw.url}/chat/completions", timeout=0.5,
                    json={"model": "bot", "messages": [{"role": "user", "content": "hi"}]})  # fmt: skip
            stats = wait_for(lambda: serve_ws.serving.show("bot").arms.get("stable"))
    assert stats.requests == 1 and stats.errors == 0


def test_a_candidate_answering_429_fails_over(attached: Workspace) -> None:
    with MockServer(fault_every=1, fault_kind="429") as busy:
        attached.serving.backends.attach("support-lora@3", url=busy.url, served_name="busy")
        attached.serving.traffic.set("support-bot", candidate="support-lora@3", weight=100)
        with start_gateway(attached) as gw:
            assert chat(gw).headers["x-llmops-arm"] == "stable"


def test_feedback_is_one_vote_per_answer_from_its_own_key(attached: Workspace) -> None:
    mine = attached.serving.keys.create("mine").secret
    other = attached.serving.keys.create("other").secret
    with start_gateway(attached) as gw:
        r = chat(gw, headers={"Authorization": f"Bearer {mine}"})
        rid = r.headers["x-llmops-response-id"]
        url = f"{gw.url}/feedback"

        def vote(secret: str, payload: dict[str, object]) -> httpx.Response:
            return httpx.post(url, json=payload, headers={"Authorization": f"Bearer {secret}"})

        assert vote(other, {"response_id": rid, "score": 0}).status_code == 403
        assert httpx.post(url, json={"response_id": rid, "score": 0}).status_code == 401
        for score in (0, 0, 0, 1):
            assert vote(mine, {"response_id": rid, "score": score}).status_code == 200
        assert vote(mine, {"response_id": "fo-" + rid[3:], "score": 1}).status_code == 404
    stats = wait_for(lambda: attached.serving.show("support-bot").arms["stable"])
    assert stats.feedback == 1 and stats.feedback_mean == 1.0  # the latest vote counts


def test_stopping_an_attached_backend_stops_only_it(serve_ws: Workspace) -> None:
    backends = serve_ws.serving.backends
    a = backends.attach("support-lora@1", url="http://127.0.0.1:9/v1", served_name="x")
    b = backends.attach("support-lora@1", url="http://127.0.0.1:9/v1", served_name="x-alt")
    assert [s.id for s in serve_ws.serving.stop(b.id)] == [b.id]
    assert [x.id for x in backends.list()] == [a.id]


@pytest.mark.parametrize(("url", "expected"), [
    ("http://[::1]:8011/v1", "http://[::1]:8011/v1"),
    ("http://127.0.0.1:8000", "http://127.0.0.1:8000/v1"),
    ("https://api.example.com/openai/v1/", "https://api.example.com/openai/v1"),
])  # fmt: skip
def test_backend_urls_are_normalised(url: str, expected: str) -> None:
    assert check_url(url) == expected


@pytest.mark.parametrize(("url", "message"), [
    ("http://127.0.0.1:0/v1", "port 0"),
    ("http://127.0.0.1:99999/v1", "invalid port"),
    ("http://127.0.0.1:8000/v1/chat/completions", "names an endpoint"),
    ("http://127.0.0.1:8000/v1/../v1", "names an endpoint"),
    ("http://exa mple.com/v1", "spaces or control characters"),
    ("http://h/v1%0d%0aX:1", "spaces or control characters"),
    ("http://h/v1?debug=1", "query or fragment"),
    ("file:///etc/passwd", r"not an http\(s\) URL"),
])  # fmt: skip
def test_unusable_backend_urls_are_refused(url: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        check_url(url)


def test_a_moved_alias_does_not_lock_the_policy(serve_ws: Workspace) -> None:
    traffic = serve_ws.serving.traffic
    traffic.set("drift", stable="support-lora@production", candidate="support-lora@2", weight=50)
    serve_ws.artifacts.alias("support-lora@2", "production")  # both arms now name version 2
    assert traffic.set("drift", weight=0).weight == 0
    assert traffic.set("drift", shadow=0.1).shadow == 0.1


def test_a_weight_without_a_candidate_is_refused_not_dropped(serve_ws: Workspace) -> None:
    with pytest.raises(InputError, match="no candidate"):
        serve_ws.serving.traffic.set("p1", stable="support-lora@1", weight=30)
    with pytest.raises(NotFoundError, match="no traffic policy"):
        serve_ws.serving.traffic.history("never")
    policy = serve_ws.serving.traffic.set("p2", stable="support-lora@1",
                                          candidate="support-lora@2", weight=-0.0)  # fmt: skip
    assert str(policy.weight) == "0.0"


def test_export_templates_and_names_are_checked(serve_ws: Workspace) -> None:
    serve_ws.serving.traffic.set("Bot.v2", stable="support-lora@1")
    with pytest.raises(InputError, match="other than"):
        serve_ws.serving.export("Bot.v2", format="llm-d", uri="s3://x/{served_name.__class__}")
    with pytest.raises(InputError, match="not a Kubernetes name"):
        serve_ws.serving.export("Bot.v2", format="llm-d", namespace="NS WITH SPACE")
    text = serve_ws.serving.export("Bot.v2", format="llm-d")
    assert "name: bot-v2\n" in text and "name: bot-v2-pool\n" in text


def test_revoking_the_last_key_keeps_the_gateway_closed(attached: Workspace) -> None:
    created = attached.serving.keys.create("only")
    with start_gateway(attached) as gw:
        auth = {"Authorization": f"Bearer {created.secret}"}
        assert chat(gw, headers=auth).status_code == 200
        attached.serving.keys.revoke(created.key.id)
        wait_for(lambda: not gw.snapshot.keys)
        assert chat(gw, headers=auth).status_code == 401
        assert chat(gw).status_code == 401


def test_feedback_reaches_another_replica_within_a_flush(attached: Workspace) -> None:
    with start_gateway(attached, flush_s=0.3) as one, start_gateway(attached, flush_s=0.3) as two:
        rid = chat(one).headers["x-llmops-response-id"]
        r = httpx.post(f"{two.url}/feedback", json={"response_id": rid, "thumbs": "up"})
    assert r.status_code == 200 and r.json()["arm"] == "stable"


def test_history_revisions_match_the_policy(serve_ws: Workspace) -> None:
    traffic = serve_ws.serving.traffic
    traffic.set("bot", stable="support-lora@1", candidate="support-lora@2", weight=5)
    traffic.kill("bot", reason="bad")
    history = traffic.history("bot")
    assert [h["after"]["revision"] for h in history] == [1, 2] == [1, traffic.get("bot").revision]
    assert history[1]["after"]["reason"] == "bad"
