"""Pulls are all or nothing for the destination, whenever they are killed."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from llmops import Workspace
from llmops.artifacts import ArtifactStore

from .conftest import ModelMaker, files_equal
from .test_crash_and_concurrency import big_model

PULLER = textwrap.dedent(
    """
    import sys
    from llmops import Workspace
    Workspace.open(sys.argv[1]).artifacts.pull(sys.argv[2], sys.argv[3], workers=1)
    """
)


def _tree(folder: Path) -> dict[str, bytes]:
    return {
        p.relative_to(folder).as_posix(): p.read_bytes() for p in folder.rglob("*") if p.is_file()
    }


def test_a_pull_killed_mid_way_leaves_the_old_tree_whole_and_the_next_one_cleans_up(
    tmp_path: Path,
) -> None:
    ws = Workspace.init(tmp_path / "ws", examples=False)
    v1 = big_model(tmp_path / "v1", tensors=8, seed=1)
    (v1 / "config.json").write_text('{"v": 1}')
    v2 = big_model(tmp_path / "v2", tensors=64, seed=2)  # 256 MiB: slow enough to kill
    (v2 / "config.json").write_text('{"v": 2}')
    ws.artifacts.push(v1, name="big")
    ws.artifacts.push(v2, name="big")
    dest = tmp_path / "dest"
    ws.artifacts.pull("big@1", dest)
    before = _tree(dest)
    proc = subprocess.Popen([sys.executable, "-c", PULLER, str(ws.root), "big@2", str(dest)])
    deadline = time.monotonic() + 120
    staged: list[Path] = []
    while time.monotonic() < deadline and proc.poll() is None:
        staged = [p for p in tmp_path.glob(".dest.llmops-pull-*") if any(p.rglob("*.safetensors"))]
        if staged and sum(f.stat().st_size for f in staged[0].rglob("*") if f.is_file()) > 1 << 20:
            break
        time.sleep(0.002)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, "the pull finished before it could be killed"
    assert _tree(dest) == before  # every byte still v1: never a mix
    assert list(tmp_path.glob(".dest.llmops-pull-*"))  # the killed pull's staging is left ...
    ws.artifacts.pull("big@2", dest)
    assert not list(tmp_path.glob(".dest.llmops-*-*"))  # ... and the next pull removes it
    assert files_equal(v2, dest)
    assert ws.artifacts.push(dest, name="again").created  # nothing unsafe left inside
    ws.close()


def test_a_pull_killed_between_its_two_renames_is_put_right_by_the_next(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.artifacts import pull

    first, second = make_model("a", layers=2), make_model("b", layers=3, changed=(0,))
    store.push(first, name="m")
    store.push(second, name="m")
    dest = tmp_path / "dest"
    store.pull("m@1", dest)

    def killed(staging: Path, root: Path) -> None:
        root.rename(root.parent / f".{root.name}.llmops-old-x")
        raise KeyboardInterrupt("SIGKILL between the renames")

    monkeypatch.setattr(pull, "_swap_in", killed)
    with pytest.raises(KeyboardInterrupt):
        store.pull("m@2", dest)
    monkeypatch.undo()
    assert not dest.exists()  # a reader finds nothing, not a mix
    store.pull("m@2", dest)
    assert files_equal(second, dest)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".dest")) == []


def test_files_of_the_destination_that_the_artifact_lacks_are_kept(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    store.push(make_model(), name="m")
    dest = tmp_path / "dest"
    (dest / "notes").mkdir(parents=True)
    (dest / "notes" / "readme.txt").write_text("mine")
    (dest / "empty").mkdir()
    store.pull("m", dest)
    assert (dest / "notes" / "readme.txt").read_text() == "mine"
    assert (dest / "empty").is_dir() and (dest / "model.safetensors").is_file()


def test_a_failed_pull_changes_nothing(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    from llmops.errors import StoreError

    store.push(make_model(), name="m")
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "model.safetensors").write_text("old")
    store.backend.delete(store.index.packs()[0][1])
    with pytest.raises(StoreError):
        store.pull("m", dest)
    assert _tree(dest) == {"model.safetensors": b"old"}
    assert not list(tmp_path.glob(".dest.llmops-pull-*"))


def test_pulls_through_a_link_and_the_real_name_take_turns(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    import threading

    store.push(make_model("a", layers=2), name="m")
    store.push(make_model("b", layers=3, changed=(0,)), name="m")
    real, link = tmp_path / "R", tmp_path / "L"
    store.pull("m@1", real)
    (real / "notes.txt").write_text("mine")
    link.symlink_to(real)
    errors: list[BaseException] = []

    def pull(ref: str, dest: Path) -> None:
        try:
            store.pull(ref, dest)
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=pull, args=("m@2", link)),
        threading.Thread(target=pull, args=("m@1", real)),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    names = {p.name for p in real.iterdir()}
    assert {"model.safetensors", "config.json", "notes.txt"} <= names
    assert link.is_symlink() and not [p for p in tmp_path.iterdir() if ".llmops-" in p.name]


def test_a_pull_into_the_current_directory_leaves_it_usable(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, second = make_model("a", layers=2), make_model("b", layers=3, changed=(0,))
    store.push(first, name="m")
    store.push(second, name="m")
    here = tmp_path / "here"
    here.mkdir()
    monkeypatch.chdir(here)
    store.pull("m@1", Path("."))
    inode = here.stat().st_ino
    store.pull("m@2", Path("."))
    assert Path.cwd().stat().st_ino == inode  # the same folder, not a swapped-in one
    assert files_equal(second, here)
    assert not [p for p in tmp_path.iterdir() if ".llmops-" in p.name]


def test_a_pull_never_writes_tool_state_or_replaces_a_workspace(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    from llmops.artifacts.manifest import Manifest
    from llmops.artifacts.pull import pull_files
    from llmops.errors import UnsafeFileError

    model = make_model()
    (model / ".git" / "hooks").mkdir(parents=True)
    (model / ".git" / "hooks" / "pre-commit").write_text("evil")
    (model / ".llmops").mkdir()
    (model / ".llmops" / "registry.db").write_text("evil")
    pushed = store.push(model, name="m")
    paths = [f.path for f in store.manifest(pushed.version).files]
    assert not [p for p in paths if p.startswith((".git", ".llmops"))]  # pushes leave them out
    manifest = store.manifest(pushed.version)
    forged = Manifest(files=[manifest.files[0].model_copy(update={"path": ".git/hooks/x"})])
    with pytest.raises(UnsafeFileError, match="tool state"):
        pull_files(forged, tmp_path / "dest", backend=store.backend, index=store.index)
    (model / "llmops.toml").write_text("name = 'pwned'\n")
    store.push(model, name="w")
    workspace = tmp_path / "ws"
    workspace.mkdir()
    (workspace / "llmops.toml").write_text("name = 'mine'\n")
    with pytest.raises(UnsafeFileError, match=r"llmops\.toml of a workspace"):
        store.pull("w", workspace)
    assert (workspace / "llmops.toml").read_text() == "name = 'mine'\n"


@pytest.mark.parametrize("kind", ["loop", "under-a-file"])
def test_odd_destinations_are_one_line_errors(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path, kind: str
) -> None:
    from llmops.errors import InputError, UnsafeFileError

    store.push(make_model(), name="m")
    if kind == "loop":
        dest = tmp_path / "loop"
        dest.symlink_to(dest)
    else:
        (tmp_path / "afile").write_text("x")
        dest = tmp_path / "afile" / "x"
    with pytest.raises((InputError, UnsafeFileError)):
        store.pull("m", dest)


def test_a_nested_workspace_and_upper_case_git_are_protected(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    from llmops.errors import UnsafeFileError

    model = make_model()
    (model / "inner").mkdir()
    (model / "inner" / "llmops.toml").write_text("name = 'evil'\n")
    (model / ".GIT").mkdir()
    (model / ".GIT" / "hook").write_text("x")
    pushed = store.push(model, name="m")
    assert not [f.path for f in store.manifest(pushed.version).files if f.path.startswith(".GIT")]
    dest = tmp_path / "pd"
    (dest / "inner").mkdir(parents=True)
    (dest / "inner" / "llmops.toml").write_text("name = 'mine'\n")
    with pytest.raises(UnsafeFileError, match=r"llmops\.toml of a workspace"):
        store.pull("m", dest)
    assert (dest / "inner" / "llmops.toml").read_text() == "name = 'mine'\n"
