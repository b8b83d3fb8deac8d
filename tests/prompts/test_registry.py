"""The prompt registry on SQLite and PostgreSQL (the ``ws`` fixture runs each test on both)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import warnings
from pathlib import Path
from typing import Any

import pytest

from llmops import Workspace
from llmops.errors import DatabaseUnavailableError, InvalidNameError, PromptNotFoundError
from llmops.prompts import PromptSpec, StalePromptWarning


def spec(text: str = "Hello {{ who }}", name: str = "greet", **extra: Any) -> PromptSpec:
    return PromptSpec.model_validate({"name": name, "template": text, **extra})


def test_push_numbers_versions_and_skips_identical_content(ws: Workspace) -> None:
    first = ws.prompts.push(spec("v1"), message="first")
    again = ws.prompts.push(spec("v1"))
    second = ws.prompts.push(spec("v2"))
    assert (first.version, first.created) == (1, True)
    assert (again.version, again.created) == (1, False)
    assert (second.version, second.created) == (2, True)
    assert [v.version for v in ws.prompts.versions("greet")] == [1, 2]


def test_pushing_old_content_again_creates_nothing(ws: Workspace) -> None:
    ws.prompts.push(spec("a"))
    ws.prompts.push(spec("b"))
    back = ws.prompts.push(spec("a"))
    assert (back.version, back.created) == (1, False)


def test_push_files_pushes_the_example_prompts(ws: Workspace) -> None:
    results = ws.prompts.push_files()
    assert sorted(r.name for r in results) == ["classify-ticket", "qa-text", "summarize"]
    assert all(r.created and r.version == 1 for r in results)
    assert not any(r.created for r in ws.prompts.push_files())


def test_push_files_validates_everything_before_writing(ws: Workspace, tmp_path: Path) -> None:
    folder = tmp_path / "batch"
    folder.mkdir()
    (folder / "a.yaml").write_text("name: a\ntemplate: fine\n")
    (folder / "b.yaml").write_text("name: b\ntemplate: '{% if %}'\n")
    with pytest.raises(Exception, match=r"b\.yaml"):
        ws.prompts.push_files([folder])
    assert ws.prompts.list() == []


def test_two_files_with_one_name_are_refused(ws: Workspace, tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("name: same\ntemplate: one\n")
    (tmp_path / "b.yaml").write_text("name: same\ntemplate: two\n")
    with pytest.raises(Exception, match="also declared in"):
        ws.prompts.push_files([tmp_path / "a.yaml", tmp_path / "b.yaml"])


def test_get_by_latest_version_label_and_digest(ws: Workspace) -> None:
    one = ws.prompts.push(spec("one"))
    ws.prompts.push(spec("two"))
    ws.prompts.label("greet@1", "production")
    assert ws.prompts.get("greet").version == 2
    assert ws.prompts.get("greet@1").spec.template == "one"
    assert ws.prompts.get("greet", version=1).version == 1
    prod = ws.prompts.get("greet", label="production")
    assert (prod.version, prod.labels) == (1, ("production",))
    assert ws.prompts.get(one.digest).version == 1


def test_render_from_the_registry(ws: Workspace) -> None:
    ws.prompts.push_files()
    ws.prompts.label("summarize@1", "production")
    out = ws.prompts.get("summarize", label="production").render(text="{{ secret }}")
    assert out.messages[0]["role"] == "system"
    assert "{{ secret }}" in out.messages[1]["content"]
    assert "at most 3 sentences" in out.messages[1]["content"]


@pytest.mark.parametrize(
    ("ref", "match"),
    [
        ("nope", "no prompt named 'nope'"),
        ("greet@9", "prompt 'greet' has no version 9"),
        ("greet@production", "prompt 'greet' has no label 'production'"),
        ("sha256:" + "0" * 64, "no prompt version has digest"),
    ],
)
def test_get_missing_things_says_what_is_missing(ws: Workspace, ref: str, match: str) -> None:
    ws.prompts.push(spec())
    with pytest.raises(PromptNotFoundError, match=match):
        ws.prompts.get(ref)


def test_label_moves_atomically_and_has_history(ws: Workspace) -> None:
    ws.prompts.push(spec("one"), message="first")
    ws.prompts.push(spec("two"), message="second")
    first = ws.prompts.label("greet@1", "production")
    moved = ws.prompts.label("greet@2", "production")
    same = ws.prompts.label("greet@2", "production")
    assert (first.previous_version, first.version) == (None, 1)
    assert (moved.previous_version, moved.version, moved.changed) == (1, 2, True)
    assert not same.changed
    history = ws.prompts.history("greet")
    assert [(h.action, h.version, h.label, h.previous_version) for h in history] == [
        ("create", 1, None, None),
        ("create", 2, None, None),
        ("label", 1, "production", None),
        ("label", 2, "production", 1),
    ]
    assert history[0].message == "first" and history[0].actor == "tester"


def test_unlabel_removes_and_is_audited(ws: Workspace) -> None:
    ws.prompts.push(spec())
    ws.prompts.label("greet@1", "staging")
    removed = ws.prompts.unlabel("greet", "staging")
    assert (removed.previous_version, removed.version) == (1, None)
    assert ws.prompts.history("greet")[-1].action == "unlabel"
    with pytest.raises(PromptNotFoundError, match="no label 'staging'"):
        ws.prompts.get("greet@staging")


@pytest.mark.parametrize("label", ["latest", "42", "bad label", "a/b"])
def test_reserved_or_bad_labels_are_refused(ws: Workspace, label: str) -> None:
    ws.prompts.push(spec())
    with pytest.raises(InvalidNameError):
        ws.prompts.label("greet@1", label)


def test_label_of_missing_version_is_refused_and_changes_nothing(ws: Workspace) -> None:
    ws.prompts.push(spec())
    with pytest.raises(PromptNotFoundError, match="no version 5"):
        ws.prompts.label("greet@5", "production")
    assert ws.prompts.list()[0].labels == {}


def test_archived_versions_leave_latest_but_stay_readable(ws: Workspace) -> None:
    ws.prompts.push(spec("one"))
    ws.prompts.push(spec("two"))
    info = ws.prompts.archive("greet@2")
    assert info.archived
    assert ws.prompts.get("greet", cache=False).version == 1
    assert ws.prompts.get("greet@2").archived
    ws.prompts.archive("greet@2", archived=False)
    assert ws.prompts.get("greet", cache=False).version == 2
    assert [h.action for h in ws.prompts.history("greet")][-2:] == ["archive", "unarchive"]


def test_list_summarises_prompts(ws: Workspace) -> None:
    ws.prompts.push(spec(name="b"))
    ws.prompts.push(spec(name="a"))
    ws.prompts.push(spec("x", name="a"))
    ws.prompts.label("a@1", "production")
    listing = ws.prompts.list()
    assert [(s.name, s.latest_version, s.labels) for s in listing] == [
        ("a", 2, {"production": 1}),
        ("b", 1, {}),
    ]


def test_diff_reports_messages_variables_and_parameters(ws: Workspace) -> None:
    ws.prompts.push(spec("Hello {{ who }}", model={"temperature": 0.1}))
    ws.prompts.push(
        spec("Hi {{ who }} from {{ place }}", model={"temperature": 0.7}),
    )
    diff = ws.prompts.diff("greet@1", "greet@2")
    assert "-Hello {{ who }}" in diff.text and "+Hi {{ who }} from {{ place }}" in diff.text
    keys = {c.key: (c.before, c.after) for c in diff.changes}
    assert keys["model.temperature"] == (0.1, 0.7)
    assert keys["variables.place"][0] is None
    assert not diff.identical
    assert ws.prompts.diff("greet@1", "greet@1").identical


def test_audit_log_is_append_only_in_the_database(ws: Workspace) -> None:
    from sqlalchemy import text

    ws.prompts.push(spec())
    with pytest.raises(Exception, match="append-only"), ws.db.engine.begin() as conn:
        conn.execute(text("UPDATE audit_event SET actor = 'mallory'"))
    with pytest.raises(Exception, match="append-only"), ws.db.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_event"))
    assert ws.prompts.history("greet")[0].actor == "tester"


def test_versions_are_immutable_in_the_database(ws: Workspace) -> None:
    from sqlalchemy import text

    ws.prompts.push(spec("original"))
    for statement in (
        "UPDATE prompt_version SET spec = '{}'",
        "UPDATE prompt_version SET digest = 'sha256:0'",
        "DELETE FROM prompt_version",
    ):
        with pytest.raises(Exception, match="immutable"), ws.db.engine.begin() as conn:
            conn.execute(text(statement))
    ws.prompts.archive("greet@1")  # the one column that may change
    assert ws.prompts.get("greet@1", cache=False).spec.template == "original"


def test_pull_writes_files_that_push_back_to_the_same_version(
    ws: Workspace, tmp_path: Path
) -> None:
    ws.prompts.push_files()
    ws.prompts.push(spec("Goodbye {{ who }}", name="farewell"))
    out = tmp_path / "pulled"
    results = ws.prompts.pull(directory=out)
    assert sorted(p.name for p in out.iterdir()) == [
        "classify-ticket.yaml",
        "farewell.yaml",
        "qa-text.yaml",
        "summarize.yaml",
    ]
    assert all(r.created for r in results)
    assert not any(r.created for r in ws.prompts.push_files([out]))
    assert not any(r.created for r in ws.prompts.pull(directory=out))


def test_pull_updates_the_file_a_prompt_already_lives_in(ws: Workspace) -> None:
    ws.prompts.push_files()
    ws.prompts.push(spec("new text {{ text }}", name="summarize"))
    results = ws.prompts.pull(["summarize"])
    assert results[0].path == str(ws.prompts_dir / "summarize.yaml")
    assert "new text" in (ws.prompts_dir / "summarize.yaml").read_text()


def test_get_is_cached_until_the_ttl(ws: Workspace) -> None:
    ws.prompts.push(spec("one"))
    ws.prompts.label("greet@1", "production")
    first = ws.prompts.get("greet@production")
    other = Workspace.open(ws.root)
    other.prompts.push(spec("two"))
    other.prompts.label("greet@2", "production")
    assert ws.prompts.get("greet@production") is first  # served from the cache
    assert ws.prompts.get("greet@production", cache=False).version == 2
    ws.prompts.cache_ttl_s = 0
    ws.prompts.clear_cache()
    assert ws.prompts.get("greet@production").version == 2
    other.close()


def test_local_label_move_invalidates_the_cache(ws: Workspace) -> None:
    ws.prompts.push(spec("one"))
    ws.prompts.push(spec("two"))
    ws.prompts.label("greet@1", "production")
    assert ws.prompts.get("greet@production").version == 1
    ws.prompts.label("greet@2", "production")
    assert ws.prompts.get("greet@production").version == 2


def test_unreachable_database_serves_the_last_seen_version_with_a_warning(
    tmp_path: Path,
) -> None:
    from llmops.db import Database
    from llmops.prompts import PromptRegistry

    db = Database(f"sqlite:///{tmp_path / 'a' / 'registry.db'}")
    registry = PromptRegistry(db, actor="t", cache_ttl_s=0.001)
    registry.push(spec())
    seen = registry.get("greet")
    db.dispose()
    (tmp_path / "a").rename(tmp_path / "gone")
    (tmp_path / "a").write_text("not a directory")  # the database can no longer be opened
    with pytest.warns(StalePromptWarning, match="serving cached greet@1"):
        stale = registry.get("greet")
    assert stale == seen
    with pytest.raises(DatabaseUnavailableError, match="cannot use registry database"):
        registry.get("greet@production")


def test_locked_sqlite_database_fails_with_a_clear_error(tmp_path: Path) -> None:
    import sqlite3

    from llmops.db import Database
    from llmops.prompts import PromptRegistry

    path = tmp_path / "registry.db"
    registry = PromptRegistry(Database(f"sqlite:///{path}", busy_timeout_s=0.2), actor="t")
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(DatabaseUnavailableError, match="stayed locked"):
            registry.push(spec())
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert registry.push(spec()).version == 1


WRITER = textwrap.dedent(
    """
    import sys
    from llmops import Workspace
    from llmops.prompts import PromptSpec
    worker, count = int(sys.argv[1]), int(sys.argv[2])
    ws = Workspace.open(sys.argv[3])
    for i in range(count):
        ws.prompts.push(PromptSpec(name="shared", template=f"worker {worker} push {i} {{{{ x }}}}"))
        if i % 5 == 0:
            ws.prompts.label("shared", f"w{worker}")
    print("done")
    """
)


def test_concurrent_writer_processes_get_distinct_consecutive_versions(ws: Workspace) -> None:
    workers, count = 8, 15
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, str(w), str(count), str(ws.root)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for w in range(workers)
    ]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
    versions = ws.prompts.versions("shared")
    assert [v.version for v in versions] == list(range(1, workers * count + 1))
    assert len({v.digest for v in versions}) == workers * count
    history = ws.prompts.history("shared")
    assert sum(h.action == "create" for h in history) == workers * count
    label_moves = [h for h in history if h.action == "label"]
    assert len(label_moves) == workers * ((count + 4) // 5)
    # Every move's "previous" is exactly what the label held before it: none was lost.
    held: dict[str, int | None] = {}
    for move in label_moves:
        assert move.label is not None
        assert move.previous_version == held.get(move.label)
        held[move.label] = move.version
    assert {k: v for k, v in ws.prompts.list()[0].labels.items()} == held


def test_stale_warning_not_raised_when_database_is_fine(ws: Workspace) -> None:
    ws.prompts.push(spec())
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        ws.prompts.get("greet")
