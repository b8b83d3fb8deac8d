"""Pushing a folder: safe relative paths, the manifest a push would store, and the hash cache."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.artifacts import ArtifactStore, UnsafeFileError
from llmops.artifacts.transfer import check_relpath, manifest_of, push_tree

from .conftest import ModelMaker


@pytest.mark.parametrize(
    "path", ["", "/abs", "../up", "a/../b", "a\\b", "a/./b", "bad\x01name", ".llmops-pull-x/f"]
)
def test_unsafe_relative_paths_are_refused(path: str) -> None:
    with pytest.raises(UnsafeFileError):
        check_relpath(path)


def test_safe_paths_pass() -> None:
    assert check_relpath("sub/dir/model.safetensors") == "sub/dir/model.safetensors"


def test_manifest_of_stores_nothing_and_matches_the_push(
    store: ArtifactStore, make_model: ModelMaker
) -> None:
    model = make_model()
    computed = manifest_of(model)
    assert store.index.packs() == []  # nothing was written
    manifest, stats = push_tree(model, backend=store.backend, index=store.index)
    assert manifest.digest() == computed.digest() and stats.chunks_new > 0


def test_unchanged_files_are_not_read_again(
    store: ArtifactStore, make_model: ModelMaker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os
    import time

    from llmops.artifacts import transfer

    store = ArtifactStore(store.db, store.backend, actor="t", hash_cache=tmp_path / "hc.db")
    model = make_model()
    for file in model.iterdir():  # written a while ago (the cache ignores files this fresh)
        os.utime(file, (time.time() - 60, time.time() - 60))
    store.push(model, name="m")
    reads: list[Path] = []
    real = transfer._ChunkWorker.__call__

    def counting(self: object, file_no: int, span: object) -> object:
        reads.append(Path(str(file_no)))
        return real(self, file_no, span)  # type: ignore[arg-type]

    monkeypatch.setattr(transfer._ChunkWorker, "__call__", counting)
    again = store.push(model, name="m")
    assert not again.created and reads == []  # every file known to the hash cache
