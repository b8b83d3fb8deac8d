"""The CLI contract: --json documents, exit codes 0/1/2, one-line errors, --debug."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from llmops.cli._main import run


class CLI:
    def __init__(self, capsys: pytest.CaptureFixture[str]) -> None:
        self.capsys = capsys

    def __call__(self, *args: str, code: int = 0) -> tuple[str, str]:
        self.capsys.readouterr()
        got = run(list(args))
        out, err = self.capsys.readouterr()
        assert got == code, f"exit {got} != {code}\nstdout: {out}\nstderr: {err}"
        return out, err

    def json(self, *args: str, code: int = 0) -> Any:
        out, _ = self(*args, "--json", code=code)
        return json.loads(out)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], ws_root: Path, monkeypatch: pytest.MonkeyPatch) -> CLI:
    monkeypatch.chdir(ws_root)
    return CLI(capsys)


def test_push_json_lists_created_versions(cli: CLI) -> None:
    pushed = cli.json("prompts", "push")
    assert {(p["name"], p["version"], p["created"]) for p in pushed} == {
        ("classify-ticket", 1, True),
        ("qa-text", 1, True),
        ("summarize", 1, True),
    }
    again = cli.json("prompts", "push", "prompts/summarize.yaml")
    assert [(p["name"], p["version"], p["created"]) for p in again] == [("summarize", 1, False)]


def test_label_then_show_resolves_to_that_version(cli: CLI, ws_root: Path) -> None:
    cli("prompts", "push")
    path = ws_root / "prompts" / "summarize.yaml"
    path.write_text(path.read_text().replace("faithfully", "faithfully and briefly"))
    cli("prompts", "push", "-m", "shorter")
    out, _ = cli("prompts", "label", "summarize@1", "production")
    assert "production -> version 1" in out
    shown = cli.json("prompts", "show", "summarize@production")
    assert shown["version"] == 1 and shown["labels"] == ["production"]
    for key in ("name", "version", "digest", "labels", "messages", "variables", "model"):
        assert key in shown
    assert shown["messages"][0] == {
        "role": "system",
        "content": "You are a careful assistant. Summarize faithfully; never add facts.",
    }
    assert cli.json("prompts", "show", "summarize")["version"] == 2


def test_render_json_prints_messages(cli: CLI) -> None:
    cli("prompts", "push")
    rendered = cli.json(
        "prompts", "render", "summarize", "--var", "text={{ 1 + 1 }}", "--var", "max_sentences=2"
    )
    assert rendered["messages"][1]["content"].startswith(
        "Summarize the following text in at most 2"
    )
    assert "{{ 1 + 1 }}" in rendered["messages"][1]["content"]
    typed = cli.json(
        "prompts", "render", "classify-ticket", "--var", "ticket=hi", "--var", 'queues=["a", "b"]'
    )
    assert "one of a, b" in typed["messages"][0]["content"]


def test_render_text_template_and_vars_file(cli: CLI, ws_root: Path) -> None:
    cli("prompts", "push")
    (ws_root / "vars.yaml").write_text("question: Why is the sky blue?\nconcise: false\n")
    rendered = cli.json("prompts", "render", "qa-text", "--vars-file", "vars.yaml")
    assert rendered["text"] == "Question: Why is the sky blue?\nAnswer:\n"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["prompts", "show", "nope"], "error: no prompt named 'nope'"),
        (["prompts", "show", "bad name"], "error: invalid reference 'bad name'"),
        (["prompts", "render", "summarize"], "missing required variable 'text'"),
        (
            ["prompts", "render", "summarize", "--var", "text=x", "--var", "max_sentences=two"],
            "--var max_sentences='two': expected integer",
        ),
        (["prompts", "render", "summarize", "--var", "colour=red"], "has no variable 'colour'"),
        (["prompts", "label", "summarize@1", "latest"], "'latest' is implicit"),
        (["prompts", "push", "missing.yaml"], "missing.yaml: no such file or directory"),
    ],
)
def test_bad_input_exits_2_with_one_line_on_stderr(cli: CLI, args: list[str], message: str) -> None:
    cli("prompts", "push")
    out, err = cli(*args, code=2)
    assert out == ""
    assert message in err
    assert err.count("\n") == 1 and err.startswith("error: ")


def test_malformed_prompt_file_error_names_line_and_column(cli: CLI, ws_root: Path) -> None:
    (ws_root / "prompts" / "broken.yaml").write_text("name: broken\nmessages: [\n")
    _, err = cli("prompts", "push", code=2)
    assert "broken.yaml:3:1: malformed YAML" in err
    assert cli.json("prompts", "list") == []  # nothing half-written


def test_debug_adds_the_traceback(cli: CLI) -> None:
    _, err = cli("--debug", "prompts", "show", "nope", code=2)
    assert "Traceback" in err and "PromptNotFoundError" in err


def test_usage_errors_exit_2(cli: CLI) -> None:
    _, err = cli("prompts", "frobnicate", code=2)
    assert "No such command" in err


def test_diff_and_history_and_list(cli: CLI, ws_root: Path) -> None:
    cli("prompts", "push")
    path = ws_root / "prompts" / "qa-text.yaml"
    path.write_text(path.read_text().replace("max_tokens: 64", "max_tokens: 32"))
    cli("prompts", "push")
    diff = cli.json("prompts", "diff", "qa-text@1", "qa-text@2")
    assert diff["changes"] == [{"key": "model.max_tokens", "before": 64, "after": 32}]
    cli("prompts", "diff", "qa-text@1", "qa-text@2", "--exit-code", code=1)
    cli("prompts", "diff", "qa-text@1", "qa-text@1", "--exit-code", code=0)
    cli("prompts", "label", "qa-text@2", "staging")
    history = cli.json("prompts", "history", "qa-text")
    assert [h["action"] for h in history] == ["create", "create", "label"]
    versions = cli.json("prompts", "list", "qa-text")
    assert [(v["version"], v["labels"]) for v in versions] == [(1, []), (2, ["staging"])]
    human, _ = cli("prompts", "history", "qa-text")
    assert "label staging -> 2" in human


def test_pull_writes_files(cli: CLI, ws_root: Path) -> None:
    cli("prompts", "push")
    pulled = cli.json("prompts", "pull", "summarize", "--dir", "out")
    assert pulled[0]["written"] is True
    assert (ws_root / "out" / "summarize.yaml").is_file()


def test_archive_hides_from_latest(cli: CLI, ws_root: Path) -> None:
    cli("prompts", "push")
    path = ws_root / "prompts" / "qa-text.yaml"
    path.write_text(path.read_text().replace("64", "16"))
    cli("prompts", "push")
    assert cli.json("prompts", "archive", "qa-text@2")["archived"] is True
    assert cli.json("prompts", "show", "qa-text")["version"] == 1


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    env["LLMOPS_USER"] = "tester"
    return env


def test_installed_command_end_to_end_in_a_fresh_directory(tmp_path: Path) -> None:
    def llmops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "llmops", *args],
            check=False,
            cwd=cwd,
            env=_env(),
            capture_output=True,
            text=True,
            timeout=120,
        )

    init = llmops("init", "proj", "--json", cwd=tmp_path)
    assert init.returncode == 0, init.stderr
    assert (tmp_path / "proj" / "llmops.toml").is_file()
    proj = tmp_path / "proj"
    pushed = llmops("prompts", "push", "prompts/summarize.yaml", "--json", cwd=proj)
    assert json.loads(pushed.stdout)[0]["created"] is True
    assert llmops("prompts", "label", "summarize@1", "production", cwd=proj).returncode == 0
    rendered = llmops(
        "prompts", "render", "summarize@production", "--var", "text=hi", "--json", cwd=proj
    )
    assert json.loads(rendered.stdout)["messages"][1]["content"].endswith("Text:\nhi\n")
    outside = llmops("prompts", "list", cwd=tmp_path)
    assert outside.returncode == 2 and outside.stdout == ""
    assert outside.stderr.startswith("error: no llmops.toml")


def test_help_and_version() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "llmops", "--help"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    ).stdout
    assert "prompts" in out and "init" in out
    version = subprocess.run(
        [sys.executable, "-m", "llmops", "--version"],
        capture_output=True,
        text=True,
        env=_env(),
        check=True,
    ).stdout
    assert version.startswith("llmops 0.")


def test_a_yaml_bomb_is_refused_quickly(cli: CLI, ws_root: Path) -> None:
    import time

    from tests.test_yamldoc import BILLION_LAUGHS

    (ws_root / "prompts" / "bomb.yaml").write_text(BILLION_LAUGHS, encoding="utf-8")
    started = time.perf_counter()
    _, err = cli("prompts", "push", "prompts/bomb.yaml", code=2)
    assert time.perf_counter() - started < 5
    assert "bomb.yaml:5" in err and "aliases" in err and err.count("\n") == 1


@pytest.mark.parametrize(
    ("text", "match"),
    [
        (
            "name: p\ntemplate: hi\nmetadata: {x: " + "[" * 100_000 + "]" * 100_000 + "}\n",
            "nested more than",
        ),
        ("name: p\ntemplate: hi\nmetadata: {x: " + "1" * 100_000 + "}\n", "too large"),
        ('name: p\ntemplate: "hi \\ud800"\n', "lone surrogate"),
        ('{"name": "p", "template": "hi \\ud800"}\n', "lone surrogate"),
    ],
)
def test_hostile_prompt_files_are_one_line_errors(
    cli: CLI, ws_root: Path, text: str, match: str
) -> None:
    (ws_root / "prompts" / "p.yaml").write_text(text, encoding="utf-8")
    _, err = cli("prompts", "push", "prompts/p.yaml", code=2)
    assert match in err and err.count("\n") == 1
