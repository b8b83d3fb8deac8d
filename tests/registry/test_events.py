"""The event outbox and webhook delivery: signed, retried with backoff, visible, never blocking."""

from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import update

from llmops import Workspace
from llmops.db.models import EventDelivery
from llmops.db.timestamps import utcnow
from llmops.registry.events import deliver, list_events
from llmops.workspace import WebhookConfig


class Receiver:
    """A webhook receiver on loopback answering with the given statuses (then 200)."""

    def __init__(self, statuses: list[int] | None = None, delay_s: float = 0.0) -> None:
        self.statuses = list(statuses or [])
        self.delay_s = delay_s
        self.got: list[tuple[Any, bytes]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append((self.headers, body))  # case-insensitive, as HTTP is
                time.sleep(outer.delay_s)
                status = outer.statuses.pop(0) if outer.statuses else 200
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


def _due_now(ws: Workspace) -> None:
    with ws.db.write() as session:
        session.execute(update(EventDelivery).values(next_attempt_at=utcnow()))


def test_events_are_written_with_the_change_and_delivered_signed(
    reg_ws: Workspace, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HOOK_SECRET", "s3cret")
    reg_ws.artifacts.alias("support-lora@2", "staging")
    hook = WebhookConfig(url=receiver.url, name="ci", events=["model.alias.moved"],
                         secret_env="HOOK_SECRET")  # fmt: skip
    report = deliver(reg_ws.db, [hook])
    assert (report.delivered, report.pending) == (1, 0)
    ((headers, body),) = receiver.got  # only the type it asked for
    payload = json.loads(body)
    assert payload["type"] == "model.alias.moved" and payload["alias"] == "staging"
    assert payload["version"] == 2 and payload["via"] == "alias"
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert headers["X-LLMOps-Signature"] == expected
    assert headers["X-LLMOps-Event"] == "model.alias.moved"
    assert headers["X-LLMOps-Delivery"].startswith("dlv-")
    assert "s3cret" not in json.dumps(list_events(reg_ws.db))
    assert deliver(reg_ws.db, [hook]).delivered == 0  # delivered once, never again
    types = {e["type"] for e in list_events(reg_ws.db)}
    assert {"model.version.registered", "model.alias.moved"} <= types


def test_a_failing_webhook_is_retried_with_backoff_and_its_failure_is_visible(
    reg_ws: Workspace,
) -> None:
    failing = Receiver(statuses=[500, 503])
    try:
        hook = WebhookConfig(url=failing.url, events=["model.version.registered"], max_attempts=3)
        first = deliver(reg_ws.db, [hook])  # base@1, support-lora@1, @2: 500, 503, 200
        assert (first.failed, first.delivered, first.pending) == (2, 1, 2)
        shown = [d for e in list_events(reg_ws.db) for d in e["deliveries"]]
        assert any(d["last_error"] == "HTTP 500 Internal Server Error" for d in shown)
        _due_now(reg_ws)
        second = deliver(reg_ws.db, [hook])
        assert (second.delivered, second.pending) == (2, 0)
        statuses = [d["status"] for e in list_events(reg_ws.db) for d in e["deliveries"]]
        assert statuses == ["delivered"] * 3
        attempts = sorted(d["attempts"] for e in list_events(reg_ws.db) for d in e["deliveries"])
        assert attempts == [1, 2, 2]
    finally:
        failing.close()


def test_an_unreachable_or_slow_webhook_never_blocks_or_undoes_a_promotion(
    reg_ws: Workspace,
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    dead = WebhookConfig(url=f"http://127.0.0.1:{port}/x", name="dead", max_attempts=2)
    slow_server = Receiver(delay_s=2.0)
    slow = WebhookConfig(url=slow_server.url, name="slow", timeout_s=0.3, max_attempts=1)
    try:
        reg_ws.config.events.webhooks = [dead, slow]
        verdict = reg_ws.models.promote("support-lora@1", "production")
        assert verdict.promoted
        deliver(reg_ws.db, [dead, slow], budget_s=30)
        _due_now(reg_ws)
        deliver(reg_ws.db, [dead, slow], budget_s=30)
        deliveries = [d for e in list_events(reg_ws.db) for d in e["deliveries"]]
        by_hook = {d["webhook"]: d for d in deliveries}
        assert by_hook["dead"]["status"] == "failed" and by_hook["dead"]["attempts"] == 2
        assert by_hook["dead"]["last_error"].startswith("unreachable")
        assert by_hook["slow"]["status"] == "failed"
        assert by_hook["slow"]["last_error"] == "timed out after 0.3 s"
        assert reg_ws.models.get("support-lora@production").version == 1
    finally:
        slow_server.close()


def test_webhooks_are_configured_in_llmops_toml(reg_ws: Workspace) -> None:
    toml = reg_ws.root / "llmops.toml"
    toml.write_text(
        toml.read_text() + '\n[[events.webhooks]]\nurl = "https://hooks.example/llmops"\n'
        'events = ["model.promoted"]\nsecret_env = "HOOK_SECRET"\n'
    )
    ws = Workspace.open(reg_ws.root)
    try:
        (hook,) = ws.config.events.webhooks
        assert hook.events == ["model.promoted"] and hook.secret_env == "HOOK_SECRET"
    finally:
        ws.close()
    toml.write_text(toml.read_text().replace("https://hooks.example", "file:///etc"))
    with pytest.raises(Exception, match="must start with http:// or https://"):
        Workspace.open(reg_ws.root)
