"""The serving CLI contract: serve attach, traffic set/kill/show/export, gateway keys, and
`llmops gateway --port P` as a real process answering through an attached backend."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from llmops import Workspace
from llmops.evals.testing import MockServer
from tests.cli.test_prompts_cli import CLI
from tests.serve.conftest import tagged


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], ws_root: Path, monkeypatch: pytest.MonkeyPatch) -> CLI:
    from tests.registry.conftest import model_folder

    monkeypatch.chdir(ws_root)
    ws = Workspace.open(ws_root)
    try:
        ws.artifacts.push(model_folder(ws_root / "b", 0, kind="base"), name="base",
                          kind="base-model")  # fmt: skip
        for seed in (1, 2):
            ws.artifacts.push(model_folder(ws_root / f"m{seed}", seed), name="support-lora",
                              kind="adapter", parents=["base@1"])  # fmt: skip
        ws.artifacts.alias("support-lora@1", "production")
    finally:
        ws.close()
    return CLI(capsys)


def test_attach_set_show_kill_export(cli: CLI) -> None:
    attached = cli.json("serve", "attach", "support-lora@2", "--url", "http://127.0.0.1:9/v1",
                        "--served-name", "lora-v2")  # fmt: skip
    assert (attached["ref"], attached["served_name"], attached["kind"]) == (
        "support-lora@2", "lora-v2", "external")  # fmt: skip
    policy = cli.json("traffic", "set", "support-bot", "--stable", "support-lora@production",
                      "--candidate", "support-lora@2", "--weight", "10", "--sticky",
                      "header:x-user-id", "--shadow", "0.25")  # fmt: skip
    assert (policy["weight"], policy["sticky"], policy["shadow"]) == (10, "header:x-user-id", 0.25)
    shown = cli.json("traffic", "show", "support-bot")
    assert {"stable", "candidate", "weight", "requests", "errors"} <= shown.keys()
    assert shown["resolved"] == {"stable": "support-lora@1", "candidate": "support-lora@2"}
    killed = cli.json("traffic", "kill", "support-bot")
    assert killed["killed"] is True and killed["weight"] == 0
    out, _ = cli("traffic", "export", "support-bot", "--format", "llm-d")
    manifest = yaml.safe_load(out)
    assert (manifest["apiVersion"], manifest["kind"]) == (
        "llm-d.ai/v1alpha2",
        "InferenceModelRewrite",
    )
    assert [b["id"] for b in cli.json("serve", "list")] == [attached["id"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["traffic", "set", "bot", "--stable", "support-lora@1", "--candidate", "support-lora@2",
          "--weight", "120"], "outside 0-100"),
        (["traffic", "set", "bot", "--stable", "support-lora@1", "--candidate",
          "support-lora@production", "--weight", "5"], "is the stable arm"),
        (["traffic", "set", "bot", "--stable", "support-lora@7"], "support-lora"),
        (["traffic", "set", "bot", "--stable", "support-lora@1", "--sticky", "cookie:x"],
         "header:<name> or conversation"),
        (["traffic", "show", "nobody"], "no traffic policy"),
        (["serve", "attach", "support-lora@1", "--url", "ftp://x", "--served-name", "a"],
         "not an http(s) URL"),
        (["serve", "attach", "support-lora@1", "--url", "http://u:p@h/v1", "--served-name", "a"],
         "carries credentials"),
        (["gateway", "keys", "create", "--rate", "lots"], "not N/s, N/min or N/hour"),
        (["traffic", "export", "nobody", "--format", "helm"], "unknown export format"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_with_exit_2(cli: CLI, args: list[str], message: str) -> None:
    _, err = cli(*args, code=2)
    assert message in err and len(err.strip().splitlines()) == 1


def test_keys_are_shown_once_and_never_listed(cli: CLI) -> None:
    created = cli.json("gateway", "keys", "create", "--name", "ci", "--models", "support-bot",
                       "--rate", "600/min")  # fmt: skip
    secret = created["secret"]
    assert secret.startswith("llmops-") and created["key"]["rate_per_minute"] == 600
    listed, _ = cli("gateway", "keys", "list", "--json")
    assert secret not in listed and created["key"]["id"] in listed
    assert cli.json("gateway", "keys", "revoke", created["key"]["id"])["revoked"] is True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_the_gateway_command_serves_a_logical_model(cli: CLI, ws_root: Path) -> None:
    with MockServer(tagged("stable")) as backend:
        cli.json("serve", "attach", "support-lora@1", "--url", backend.url, "--served-name", "v1")
        cli.json("traffic", "set", "support-bot", "--stable", "support-lora@production")
        port = _free_port()
        env = {**os.environ, "LLMOPS_WORKSPACE": str(ws_root)}
        proc = subprocess.Popen([sys.executable, "-m", "llmops", "gateway", "--port", str(port)],
                                env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}/v1"
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:
                try:
                    httpx.get(f"{url}/models", timeout=1)
                    break
                except httpx.TransportError:
                    time.sleep(0.1)
            r = httpx.post(f"{url}/chat/completions", timeout=10, json={
                "model": "support-bot", "messages": [{"role": "user", "content": "pineapple-secret"}]})  # fmt: skip
            assert r.status_code == 200
            assert r.headers["x-llmops-arm"] == "stable"
            assert r.headers["x-llmops-model-version"] == "support-lora@1"
            assert backend.requests[-1]["model"] == "v1"
            assert (
                "llmops_gateway_requests_total"
                in httpx.get(f"http://127.0.0.1:{port}/metrics").text
            )
        finally:
            proc.send_signal(signal.SIGTERM)
            _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 0
    assert b'"logical": "support-bot"' in err  # the access log, without contents
    assert b"pineapple-secret" not in err
    shown = cli.json("traffic", "show", "support-bot")
    assert shown["requests"] == {"stable": 1} and shown["errors"] == {"stable": 0}


def test_canary_start_status_rollback_and_export(cli: CLI) -> None:
    cli.json(
        "serve", "attach", "support-lora@1", "--url", "http://127.0.0.1:9/v1", "--served-name", "a"
    )
    cli.json(
        "serve", "attach", "support-lora@2", "--url", "http://127.0.0.1:9/v1", "--served-name", "b"
    )
    cli.json("traffic", "set", "support-bot", "--stable", "support-lora@production")
    started = cli.json("canary", "start", "support-bot", "--candidate", "support-lora@2", "--steps",
                       "5,25,50,100", "--min-requests", "200", "--min-seconds", "30")  # fmt: skip
    assert (started["state"], started["step"], started["weight"]) == ("running", 0, 5)
    status = cli.json("canary", "status", "support-bot")
    assert {"state", "step", "weight", "arms", "decisions"} <= status.keys()
    assert {"at", "action", "reason"} <= status["decisions"][0].keys()
    _, err = cli("canary", "start", "support-bot", "--candidate", "support-lora@2", code=1)
    assert "is running" in err
    _, err = cli(
        "canary", "start", "support-bot", "--candidate", "support-lora@2", "--steps", "5,x", code=2
    )
    assert "--steps" in err
    out, _ = cli("canary", "export", "support-bot", "--format", "argo", "--gateway-url",
                 "http://gw.ml:8080")  # fmt: skip
    doc = yaml.safe_load(out)
    assert (doc["apiVersion"], doc["kind"]) == ("argoproj.io/v1alpha1", "AnalysisTemplate")
    metric = doc["spec"]["metrics"][0]
    assert metric["provider"]["web"]["url"] == "http://gw.ml:8080/canary/support-bot/analysis"
    assert metric["successCondition"] == "result == false"
    assert "headers" not in metric["provider"]["web"]
    out, _ = cli("canary", "export", "support-bot", "--api-key-secret", "llmops-gw/api-key")
    doc = yaml.safe_load(out)
    assert doc["spec"]["args"] == [
        {"name": "api-key", "valueFrom": {"secretKeyRef": {"name": "llmops-gw", "key": "api-key"}}}
    ]
    header = doc["spec"]["metrics"][0]["provider"]["web"]["headers"][0]
    assert header == {"key": "Authorization", "value": "Bearer {{args.api-key}}"}
    _, err = cli("canary", "export", "support-bot", "--api-key-secret", "nokey", code=2)
    assert "SECRET/KEY" in err
    paths = [m["provider"]["web"]["jsonPath"] for m in doc["spec"]["metrics"]]
    assert paths == ["{$.analysis.error_rate.breach}", "{$.analysis.latency.breach}",
                     "{$.analysis.breach}"]  # fmt: skip
    out, _ = cli("canary", "export", "support-bot", "--format", "flagger", "--gateway-url",
                 "http://gw.ml:8080")  # fmt: skip
    doc = yaml.safe_load(out)
    assert (doc["apiVersion"], doc["kind"]) == ("flagger.app/v1beta1", "Canary")
    hook = doc["spec"]["analysis"]["webhooks"][0]
    assert hook == {"name": "llmops-analysis", "type": "rollout", "timeout": "10s",
                    "url": "http://gw.ml:8080/canary/support-bot/check"}  # fmt: skip
    _, err = cli("canary", "export", "support-bot", "--format", "flagger", "--api-key-secret",
                 "s/k", code=2)  # fmt: skip
    assert "send no headers" in err
    out, _ = cli("canary", "export", "support-bot", "--format", "llm-d")
    weights = re.findall(r'"weight": (\d+)', json.dumps(yaml.safe_load(out)))
    assert sorted(map(int, weights)) == [500, 9500]  # the split at the canary's weight: 5%
    _, err = cli("canary", "export", "support-bot", "--format", "helm", code=2)
    assert "argo, flagger or llm-d" in err
    rolled = cli.json("canary", "rollback", "support-bot", "-m", "not today")
    assert rolled["state"] == "rolled_back" and rolled["weight"] == 0
    assert [c["state"] for c in cli.json("canary", "list")] == ["rolled_back"]
