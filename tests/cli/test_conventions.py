"""Conventions every command shares: global options anywhere, --json on every command, help,
completion, tables that never cut ids, third-party noise off unless --verbose."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from llmops.cli._main import _hoist, run
from llmops.errors import PromptFileError
from llmops.prompts.files import load_prompt_file
from tests.cli.test_prompts_cli import CLI


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], ws_root: Path, monkeypatch: pytest.MonkeyPatch) -> CLI:
    monkeypatch.chdir(ws_root)
    return CLI(capsys)


def test_global_options_are_accepted_anywhere_on_the_line() -> None:
    assert _hoist(["prompts", "list", "--debug", "-w", "ws", "--json"]) == [
        "--debug", "-w", "ws", "prompts", "list", "--json",
    ]  # fmt: skip
    assert _hoist(["--json", "eval", "show", "X", "--verbose"]) == [
        "--verbose", "eval", "show", "X", "--json",
    ]  # fmt: skip
    assert _hoist(["eval", "--json", "list"]) == ["eval", "list", "--json"]
    # After the command's name --json stays put: it may be an option's value.
    assert _hoist(["prompts", "push", "-m", "--json", "p.yaml"]) == [
        "prompts", "push", "-m", "--json", "p.yaml",
    ]  # fmt: skip
    assert _hoist(["train", "r.yaml", "--json"]) == ["train", "r.yaml", "--json"]
    # After `--` everything is an argument, not an option.
    assert _hoist(["prompts", "render", "x", "--", "--json"]) == [
        "prompts", "render", "x", "--", "--json",
    ]  # fmt: skip


def test_json_and_workspace_before_the_command_work(
    cli: CLI, ws_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # not in the workspace: -w finds it
    out, _ = cli("--json", "prompts", "list", "-w", str(ws_root))
    assert isinstance(json.loads(out), list)


def test_bare_llmops_prints_help_and_exits_0(cli: CLI) -> None:
    out, _ = cli()
    assert "Usage: llmops" in out and "prompts" in out and "--install-completion" in out


def test_every_command_takes_json(capsys: pytest.CaptureFixture[str]) -> None:
    from typer.main import get_command

    from llmops.cli.app import app

    missing = []

    def walk(command: object, path: list[str]) -> None:
        subcommands = getattr(command, "commands", None)
        if subcommands:
            for name, sub in subcommands.items():
                walk(sub, [*path, name])
            return
        params = {opt for p in command.params for opt in p.opts}  # type: ignore[attr-defined]
        if "--json" not in params:
            missing.append(" ".join(path))

    walk(get_command(app), [])
    assert missing == []


def test_artifacts_list_is_ls(cli: CLI) -> None:
    assert cli.json("artifacts", "list") == cli.json("artifacts", "ls") == []


def test_piped_tables_keep_long_names_whole(cli: CLI, ws_root: Path) -> None:
    name = "a-very-long-prompt-name-that-a-narrow-table-would-fold-or-cut-" + "x" * 60
    (ws_root / "prompts" / "long.yaml").write_text(f"name: {name}\ntemplate: hi\n")
    cli("prompts", "push")
    out, _ = cli("prompts", "list")
    assert name in out  # stdout is not a terminal here: nothing is folded


def test_builtin_prompts_stay_out_of_listings_and_pulls_unless_asked(
    cli: CLI, ws_root: Path
) -> None:
    from llmops import Workspace

    cli("prompts", "push")
    ws = Workspace.open(ws_root)
    try:
        (ws_root / "j.yaml").write_text("name: llmops-judge-custom\ntemplate: judge {{ x }}\n")
        # Files may not take the prefix (they would vanish from listings); llmops' own
        # prompts are pushed as specs.
        with pytest.raises(PromptFileError, match="starts with 'llmops-', which llmops keeps"):
            ws.prompts.push(ws_root / "j.yaml")
        ws.prompts.push(load_prompt_file(ws_root / "j.yaml"))
    finally:
        ws.close()
    names = [p["name"] for p in cli.json("prompts", "list")]
    assert "llmops-judge-custom" not in names and names
    assert "llmops-judge-custom" in [
        p["name"] for p in cli.json("prompts", "list", "--include-builtin")
    ]
    out = tmp = ws_root / "pulled"
    cli("prompts", "pull", "--dir", str(out))
    assert not (tmp / "llmops-judge-custom.yaml").exists()
    cli("prompts", "pull", "--dir", str(out), "--include-builtin")
    assert (tmp / "llmops-judge-custom.yaml").is_file()


def test_recipes_validate_checks_every_file_and_reports_json_on_failure(
    cli: CLI, ws_root: Path
) -> None:
    good = ws_root / "good.yaml"
    good.write_text("base_model: m\ndataset: {path: d.jsonl}\noutput: {name: o}\n")
    bad = ws_root / "bad.yaml"
    bad.write_text("base_model: m\ndataset: {path: d.jsonl}\noutput: {name: o}\nlora: {r: 0}\n")
    worse = ws_root / "worse.yaml"
    worse.write_text("base_model: [\n")
    data = cli.json("recipes", "validate", str(bad), str(good), str(worse), code=2)
    assert data["ok"] is False
    assert [r["ok"] for r in data["recipes"]] == [False, True, False]
    assert "bad.yaml:4" in data["recipes"][0]["error"] and "lora.r" in data["recipes"][0]["error"]
    assert "worse.yaml:2" in data["recipes"][2]["error"]
    _, err = cli("recipes", "validate", str(bad), str(worse), code=2)
    assert err.count("error:") == 2


def test_third_party_noise_is_off_unless_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    from llmops.cli import _main

    seen: dict[str, str | None] = {}

    def fake_run(app: object, argv: list[str]) -> int:
        seen["tqdm"] = os.environ.get("TQDM_DISABLE")
        return 0

    monkeypatch.delenv("TQDM_DISABLE", raising=False)
    monkeypatch.setattr(_main, "_run", fake_run)
    run(["prompts", "list"])
    assert seen["tqdm"] == "1" and "TQDM_DISABLE" not in os.environ  # restored afterwards
    run(["prompts", "list", "--verbose"])
    assert seen["tqdm"] is None
