"""The CLI imports and builds only the command group a line names (typer would build every
command's parameters on each start); lines naming none, the root's help and completion get
everything."""

from __future__ import annotations

import pytest

from llmops.cli._main import _selected, run
from llmops.cli.app import build


def names(a: object) -> set[str]:
    return {g.name for g in a.registered_groups} | {c.name for c in a.registered_commands}  # type: ignore[attr-defined]


def test_a_line_gets_only_its_group_or_command() -> None:
    assert names(build(_selected(["eval", "run", "x.yaml"]))) == {"eval"}
    assert names(build(_selected(["-w", "eval", "train", "r.yaml"]))) == {"train"}  # -w's value
    assert names(build(_selected(["--debug", "pipeline", "list"]))) == {"pipeline"}
    full = names(build())
    assert len(full) > 10
    for argv in (["--help"], ["--version"], ["evl", "run"], ["--debug"]):
        assert names(build(_selected(argv))) == full, argv


def test_a_line_imports_only_its_group() -> None:
    import subprocess
    import sys

    code = (
        "import sys; from llmops.cli._main import run; run(['prompts', '--help']);"
        " print(sorted(m for m in sys.modules if m.startswith('llmops.cli.')"
        " and m.split('.')[2] not in ('_main', '_common', 'app')))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip().splitlines()[-1] == "['llmops.cli.prompts']"


def test_completion_and_typos_see_every_command(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["evl", "run"]) == 2
    assert "No such command 'evl'" in capsys.readouterr().err
    monkeypatch.setenv("_LLMOPS_COMPLETE", "complete_bash")
    assert names(build(_selected(["eval"]))) == names(build())


def test_a_group_still_lists_its_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["pipeline", "--help"]) == 0
    out = capsys.readouterr().out
    assert all(c in out for c in ("run", "show", "list", "validate", "compile"))


def test_commands_and_groups_are_registered_as_such() -> None:
    from llmops.cli.app import COMMANDS, ENTRIES

    for name, _, _ in ENTRIES:
        app = build(name)
        kind = {c.name for c in app.registered_commands}, {g.name for g in app.registered_groups}
        assert kind == (({name}, set()) if name in COMMANDS else (set(), {name})), name


def test_json_after_a_top_level_command_stays_where_it_is() -> None:
    from llmops.cli._main import _hoist

    assert _hoist(["lineage", "--depth", "--json", "x"]) == ["lineage", "--depth", "--json", "x"]
    assert _hoist(["--json", "prompts", "list"]) == ["prompts", "list", "--json"]


def test_the_stored_root_help_is_what_typer_renders() -> None:
    from llmops.cli._root_help import ROOT_HELP, render

    assert render() == ROOT_HELP, "regenerate it: python -m llmops.cli._root_help"
    assert "Commands:" in ROOT_HELP and "pipeline" in ROOT_HELP


@pytest.mark.parametrize("argv", [[], ["--help"]])
def test_root_help_is_printed_without_importing_commands(argv: list[str]) -> None:
    import os
    import subprocess
    import sys

    code = (
        f"import sys; from llmops.cli._main import run; code = run({argv!r});"
        " print('MODULES', sorted(m for m in sys.modules if m.startswith('llmops.cli.')), code)"
    )
    env = {**os.environ, "COLUMNS": "100"}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, env=env
    ).stdout
    help_text, modules = out.split("MODULES ")
    assert help_text.startswith("Usage: llmops") and "canary" in help_text
    assert modules.strip() == "['llmops.cli._main', 'llmops.cli._root_help'] 0"


def test_a_narrow_terminal_gets_typer_s_own_wrapping(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.cli._root_help import ROOT_HELP

    monkeypatch.setenv("COLUMNS", "60")
    assert run(["--help"]) == 0
    out = capsys.readouterr().out
    assert out != ROOT_HELP and "Commands:" in out
