"""What a hostile or careless user tried against the registry, each kept as a test."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from llmops import Workspace
from llmops.errors import ConfigError, InputError, PolicyError
from llmops.registry.events import deliver, list_events
from llmops.workspace import EventsConfig, WebhookConfig, default_actor
from tests.registry.conftest import write_policy


class _Server:
    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_port}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hanging() -> Iterator[_Server]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            time.sleep(30)

        def log_message(self, *args: Any) -> None:
            pass

    s = _Server(Handler)
    yield s
    s.close()


def test_a_receiver_that_never_answers_holds_a_command_no_longer_than_its_budget(
    reg_ws: Workspace, hanging: _Server
) -> None:
    hook = WebhookConfig(url=hanging.url + "/hang", timeout_s=60)
    started = time.monotonic()
    report = deliver(reg_ws.db, [hook], budget_s=1.0)
    assert time.monotonic() - started < 5 and report.failed == 1 and report.delivered == 0


def test_redirects_are_failures_not_body_less_deliveries(reg_ws: Workspace) -> None:
    got: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(self.command)
            self.send_response(302)
            self.send_header("Location", "/elsewhere")
            self.end_headers()

        def do_GET(self) -> None:
            got.append(self.command)
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: Any) -> None:
            pass

    server = _Server(Handler)
    try:
        report = deliver(reg_ws.db, [WebhookConfig(url=server.url + "/r", max_attempts=1)])
    finally:
        server.close()
    assert report.delivered == 0 and "GET" not in got
    errors = {d["last_error"] for e in list_events(reg_ws.db) for d in e["deliveries"]}
    assert any("redirects are not followed" in (e or "") for e in errors)


def test_webhook_configs_refuse_credentials_and_shared_names() -> None:
    with pytest.raises(ValueError, match="credentials in it"):
        WebhookConfig(url="http://alice:secret@hooks.example/x")
    with pytest.raises(ValueError, match=r"both named 'hooks\.example/x'"):
        EventsConfig(webhooks=[WebhookConfig(url="https://hooks.example/x?token=a"),
                               WebhookConfig(url="https://hooks.example/x?token=b")])  # fmt: skip
    EventsConfig(webhooks=[WebhookConfig(url="https://hooks.example/x?token=a", name="a"),
                           WebhookConfig(url="https://hooks.example/x?token=b", name="b")])  # fmt: skip


def test_policies_that_are_not_files_or_not_possible_are_refused(reg_ws: Workspace) -> None:
    folder = reg_ws.root / "policies"
    folder.mkdir()
    os.mkfifo(folder / "support-lora.yaml")  # reading it would block forever
    with pytest.raises(PolicyError, match="is not a regular file"):
        reg_ws.models.promote("support-lora@1", "production")
    (folder / "support-lora.yaml").unlink()
    write_policy(reg_ws, "guards: [production, production]\n")
    with pytest.raises(PolicyError, match="an alias is listed twice"):
        reg_ws.models.promote("support-lora@1", "production")
    write_policy(reg_ws, "guards: [production]\napprovals: {count: 3, approvers: [bob]}\n")
    with pytest.raises(PolicyError, match="no promotion could ever pass"):
        reg_ws.models.promote("support-lora@1", "production")


def test_an_error_lists_a_bounded_number_of_problems(reg_ws: Workspace) -> None:
    write_policy(reg_ws, "guards: [production]\n" + "".join(f"k{i}: 1\n" for i in range(500)))
    with pytest.raises(PolicyError) as info:
        reg_ws.models.policy("support-lora")
    assert "and 490 more problem(s)" in str(info.value) and len(str(info.value)) < 3000


def test_a_dataset_policy_does_not_trap_its_aliases(reg_ws: Workspace, tmp_path: Path) -> None:
    reg_ws.artifacts.push(tmp_path / "base", name="ds", kind="dataset")
    write_policy(reg_ws, "guards: [prod]\n", name="ds")
    assert reg_ws.artifacts.alias("ds@1", "prod").aliases == ["prod"]


def test_user_names_and_semantic_versions_are_checked(
    reg_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    for bad in ("evil\x1b[31m", "x" * 300, " bob"):
        monkeypatch.setenv("LLMOPS_USER", bad)
        with pytest.raises(ConfigError, match="is not a user name"):
            default_actor()
    for bad in ("1.0.0-01", "1.0.0-" + "a" * 100, "01.0.0"):
        with pytest.raises(InputError, match="is not a semantic version"):
            reg_ws.models.set_semver("support-lora@1", bad)
