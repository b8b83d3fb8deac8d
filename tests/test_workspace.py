from __future__ import annotations

from pathlib import Path

import pytest

from llmops import Workspace
from llmops.errors import ConfigError, WorkspaceNotFoundError


def test_init_writes_config_examples_and_database(tmp_path: Path) -> None:
    ws = Workspace.init(tmp_path / "demo")
    assert (ws.root / "llmops.toml").is_file()
    assert sorted(p.name for p in (ws.root / "prompts").glob("*.yaml")) == [
        "classify-ticket.yaml",
        "qa-text.yaml",
        "summarize.yaml",
    ]
    assert (ws.root / "evals" / "README.md").is_file()
    assert (ws.root / "recipes" / "README.md").is_file()
    assert (ws.root / "pipeline.yaml").is_file()
    assert (ws.root / ".llmops" / "registry.db").is_file()
    assert ws.config.name == "demo"
    ws.close()


def test_init_never_overwrites_existing_files(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    (root / "prompts").mkdir(parents=True)
    (root / "prompts" / "summarize.yaml").write_text("name: summarize\ntemplate: mine\n")
    (root / "llmops.toml").write_text('name = "kept"\n')
    ws = Workspace.init(root)
    assert (root / "prompts" / "summarize.yaml").read_text().endswith("mine\n")
    assert ws.config.name == "kept"
    ws.close()


def test_init_into_a_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("x")
    with pytest.raises(Exception, match="is not a directory"):
        Workspace.init(tmp_path / "f")


def test_open_finds_the_nearest_workspace_upward(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Workspace.init(tmp_path / "ws", examples=False).close()
    deep = tmp_path / "ws" / "a" / "b"
    deep.mkdir(parents=True)
    monkeypatch.chdir(deep)
    assert Workspace.open().root == (tmp_path / "ws").resolve()


def test_env_workspace_wins_over_the_current_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Workspace.init(tmp_path / "one", examples=False).close()
    Workspace.init(tmp_path / "two", examples=False).close()
    monkeypatch.chdir(tmp_path / "one")
    monkeypatch.setenv("LLMOPS_WORKSPACE", str(tmp_path / "two"))
    assert Workspace.open().root.name == "two"
    assert Workspace.open(tmp_path / "one").root.name == "one"  # explicit wins over both


def test_no_workspace_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    with pytest.raises(WorkspaceNotFoundError, match="run `llmops init` here"):
        Workspace.open()
    with pytest.raises(WorkspaceNotFoundError, match="llmops init"):
        Workspace.open(tmp_path / "missing")


def test_db_url_override_from_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    ws = Workspace.init(tmp_path / "ws", examples=False)
    assert ws.db_url.startswith("sqlite:///") and ws.db_url.endswith(".llmops/registry.db")
    other = tmp_path / "elsewhere.db"
    monkeypatch.setenv("LLMOPS_DB_URL", f"sqlite:///{other}")
    assert Workspace.open(ws.root).db_url == f"sqlite:///{other}"
    monkeypatch.setenv("LLMOPS_DB_URL", "postgresql+psycopg://u:secret@h/db")
    assert "secret" not in Workspace.open(ws.root).db_url_display
    ws.close()


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("name = [unclosed", "malformed TOML"),
        ('[database]\nurll = "x"\n', r"database\.urll: Extra inputs are not permitted"),
        ("[prompts]\ncache_ttl_s = -1\n", r"prompts\.cache_ttl_s"),
    ],
)
def test_bad_config_is_reported_with_the_file(tmp_path: Path, content: str, match: str) -> None:
    (tmp_path / "llmops.toml").write_text(content)
    with pytest.raises(ConfigError, match=match) as info:
        Workspace.open(tmp_path)
    assert str(tmp_path / "llmops.toml") in str(info.value)


def test_bad_database_url_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    Workspace.init(tmp_path / "ws", examples=False).close()
    monkeypatch.setenv("LLMOPS_DB_URL", "not a url")
    with pytest.raises(ConfigError, match="cannot parse database URL"):
        Workspace.open(tmp_path / "ws").db  # noqa: B018


def test_wheel_ships_every_example_folder_that_init_copies() -> None:
    import tomllib

    from llmops.workspace import _EXAMPLE_DIRS, _EXAMPLE_FILES

    pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text())
    shipped = data["tool"]["hatch"]["build"]["targets"]["wheel"]["force-include"]
    names = (*_EXAMPLE_DIRS, *_EXAMPLE_FILES)
    examples = {k: v for k, v in shipped.items() if k in names}
    assert examples == {d: f"llmops/_examples/{d}" for d in names}
    # besides the examples, only the dashboard, where `llmops app` looks for it in a wheel
    assert {k: v for k, v in shipped.items() if k not in names} == {"app": "llmops/_app"}


def test_relative_paths_work_from_a_notebook_in_a_sub_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.init(tmp_path / "proj")
    (tmp_path / "proj" / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "proj" / "notebooks")
    opened = Workspace.open()
    pushed = opened.prompts.push("prompts/summarize.yaml")  # found from the workspace root
    assert pushed.created and pushed.path == str(tmp_path / "proj" / "prompts" / "summarize.yaml")
    (tmp_path / "proj" / "notebooks" / "prompts").mkdir()
    local = tmp_path / "proj" / "notebooks" / "prompts" / "summarize.yaml"
    local.write_text(
        (tmp_path / "proj" / "prompts" / "summarize.yaml")
        .read_text()
        .replace("careful", "very careful")
    )
    assert (
        opened.prompts.push("prompts/summarize.yaml").path == "prompts/summarize.yaml"
    )  # cwd first
    opened.close()
    ws.close()


def test_a_nested_prompts_folder_still_resolves_from_the_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ws = Workspace.init(tmp_path / "proj")
    config = tmp_path / "proj" / "llmops.toml"
    config.write_text(config.read_text().replace('dir = "prompts"', 'dir = "content/prompts"'))
    (tmp_path / "proj" / "content").mkdir()
    (tmp_path / "proj" / "prompts").rename(tmp_path / "proj" / "content" / "prompts")
    (tmp_path / "proj" / "notebooks").mkdir()
    monkeypatch.chdir(tmp_path / "proj" / "notebooks")
    opened = Workspace.open()
    assert opened.prompts.push("content/prompts/summarize.yaml").created
    opened.close()
    ws.close()
