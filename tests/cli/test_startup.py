"""The CLI builds only the command group a line names (typer would build every command's
parameters on each start); lines naming none, the root's help and completion get everything."""

from __future__ import annotations

import pytest

from llmops.cli._main import _pruned, run
from llmops.cli.app import app


def names(a: object) -> set[str]:
    return {g.name for g in a.registered_groups} | {c.name for c in a.registered_commands}  # type: ignore[attr-defined]


def test_a_line_gets_only_its_group_or_command() -> None:
    assert names(_pruned(app, ["eval", "run", "x.yaml"])) == {"eval"}
    assert names(_pruned(app, ["-w", "eval", "train", "r.yaml"])) == {"train"}  # -w takes a value
    assert names(_pruned(app, ["--debug", "pipeline", "list"])) == {"pipeline"}
    full = names(app)
    assert len(full) > 10
    for argv in (["--help"], ["--version"], ["evl", "run"], ["--debug"]):
        assert names(_pruned(app, argv)) == full, argv


def test_completion_and_typos_see_every_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["evl", "run"]) == 2
    assert "No such command 'evl'" in capsys.readouterr().err
    monkeypatch.setenv("_LLMOPS_COMPLETE", "complete_bash")
    assert names(_pruned(app, ["eval"])) == names(app)


def test_a_group_still_lists_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["pipeline", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("run", "show", "list", "validate", "compile"))
