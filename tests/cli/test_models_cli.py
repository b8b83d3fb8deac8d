"""The model registry CLI contract: show, alias, promote, approve, rollback, events (--json)."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops import Workspace
from tests.cli.test_prompts_cli import CLI
from tests.registry.conftest import model_folder


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], ws_root: Path, monkeypatch: pytest.MonkeyPatch) -> CLI:
    monkeypatch.chdir(ws_root)
    ws = Workspace.open(ws_root)
    try:
        ws.artifacts.push(model_folder(ws_root / "m1", 1), name="support-lora", kind="adapter")
        ws.artifacts.push(model_folder(ws_root / "m2", 2), name="support-lora", kind="adapter")
    finally:
        ws.close()
    (ws_root / "policies").mkdir()
    (ws_root / "policies" / "support-lora.yaml").write_text(
        "guards: [production]\napprovals: {count: 1, allow_self: false}\n"
    )
    return CLI(capsys)


def test_show_list_and_a_guarded_alias(cli: CLI) -> None:
    shown = cli.json("models", "show", "support-lora@2")
    assert {"name", "version", "digest", "kind", "aliases", "eval_runs"} <= shown.keys()
    assert (shown["kind"], shown["version"], shown["eval_runs"]) == ("adapter", 2, [])
    _, err = cli("models", "alias", "support-lora@2", "production", code=2)
    assert "guarded by" in err and "llmops models promote support-lora@2 production" in err
    assert cli.json("models", "alias", "support-lora@1", "staging")["aliases"] == ["staging"]
    (listed,) = cli.json("models", "list")
    assert listed["aliases"] == {"staging": 1} and listed["guarded"] == ["production"]


def test_request_approve_promote_rollback(cli: CLI, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLMOPS_USER", "alice")
    dry = cli.json("models", "promote", "support-lora@1", "production", "--dry-run", code=1)
    assert dry["promoted"] is False and dry["dry_run"] is True
    asked = cli.json("models", "promote", "support-lora@1", "production", code=1)
    assert asked["promoted"] is False and asked["request_id"]
    assert {"name", "ok", "detail"} <= asked["conditions"][0].keys()
    _, err = cli("models", "approve", "support-lora@1", "production", "--json", code=1)
    assert "alice requested this promotion and cannot approve it" in err
    monkeypatch.setenv("LLMOPS_USER", "bob")
    approved = cli.json("models", "approve", "support-lora@1", "production")
    assert approved["approver"] == "bob" and approved["approvals"] == 1
    done = cli.json("models", "promote", "support-lora@1", "production")
    assert done["promoted"] is True
    monkeypatch.setenv("LLMOPS_USER", "alice")
    cli.json("models", "promote", "support-lora@2", "production", code=1)
    monkeypatch.setenv("LLMOPS_USER", "bob")
    cli.json("models", "approve", "support-lora@2", "production")
    cli.json("models", "promote", "support-lora@2", "production")
    back = cli.json("models", "rollback", "support-lora@production")
    assert (back["alias"], back["version"]) == ("production", 1)
    history = cli.json("models", "history", "support-lora")
    assert [e["action"] for e in history].count("model.promoted") == 2
    events = cli.json("models", "events")
    assert {"model.promoted", "model.rolled_back", "model.promotion.requested"} <= {
        e["type"] for e in events
    }
    human, _ = cli("models", "promote", "support-lora@2", "production", "--dry-run", code=1)
    assert "FAIL approvals" in human and "would not be promoted" in human


def test_semver_and_unknown_references(cli: CLI) -> None:
    cli.json("models", "semver", "support-lora@1", "1.0.0")
    assert cli.json("models", "show", "support-lora@v1.0.0")["version"] == 1
    _, err = cli("models", "show", "nope@1", code=2)
    assert err.startswith("error: no artifact version matches nope@1")
    _, err = cli("models", "rollback", "support-lora@nothing", code=2)
    assert "no artifact version matches support-lora@nothing" in err


def test_card_writes_the_hub_readme(cli: CLI, ws_root: Path) -> None:
    out, _ = cli("models", "card", "support-lora@1")
    assert out.startswith("---\nlibrary_name: peft\n") and "# support-lora" in out
    cli("models", "card", "support-lora@1", "-o", "README-card.md")
    assert (ws_root / "README-card.md").read_text() == out


def test_card_output_paths_are_checked_and_devices_written_not_replaced(
    cli: CLI, ws_root: Path
) -> None:
    for output, message in (("", "--output is empty"), (".", "is a directory"),
                            ("no/such/card.md", "does not exist")):  # fmt: skip
        _, err = cli("models", "card", "support-lora@1", "-o", output, code=2)
        assert message in err
    cli("models", "card", "support-lora@1", "-o", "/dev/null")
    assert Path("/dev/null").is_char_device()
