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


def _local(store: ArtifactStore) -> None:
    if store.backend.url.startswith("s3://"):
        pytest.skip("the kernel copies chunks only between files on this machine")


def test_a_source_changed_between_hashing_and_copying_is_refused(
    store: ArtifactStore, make_model: ModelMaker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The kernel copies a chunk after a worker hashed it: a file rewritten in between must not
    land in the store under the old digest (later pushes would dedup against wrong bytes)."""
    import os

    from llmops.artifacts import StoreError, transfer

    _local(store)
    model = make_model()
    weights = model / "model.safetensors"
    real = transfer.copy_range

    def rewrite_then_copy(src: int, dst: int, length: int, **where: int) -> None:
        if where["src_offset"] > 4096:  # a tensor's bytes, not the header
            with weights.open("r+b") as fh:  # same size, other bytes, after the hash
                fh.seek(where["src_offset"])
                fh.write(os.urandom(min(length, 64)))
        real(src, dst, length, **where)

    monkeypatch.setattr(transfer, "copy_range", rewrite_then_copy)
    with pytest.raises(StoreError, match=r"model\.safetensors changed while it was being pushed"):
        store.push(model, name="m")
    monkeypatch.undo()
    assert store.ls() == [] and store.index.packs() == []  # nothing stored or indexed
    pushed = store.push(model, name="m")
    store.pull("m@1", tmp_path / "out")
    assert (tmp_path / "out" / "model.safetensors").read_bytes() == weights.read_bytes()
    assert pushed.created


def test_a_local_pull_copies_raw_chunks_in_the_kernel(
    store: ArtifactStore, make_model: ModelMaker, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from llmops.artifacts import pull

    _local(store)
    model = make_model()
    store.push(model, name="m")
    copied: list[int] = []
    real = pull.copy_range

    def counting(src: int, dst: int, length: int, **where: int) -> None:
        copied.append(length)
        real(src, dst, length, **where)

    def no_reads(*args: object) -> bytes:
        raise AssertionError("a raw local chunk was read into memory")

    monkeypatch.setattr(pull, "copy_range", counting)
    monkeypatch.setattr(pull, "read_chunk", no_reads)
    store.pull("m@1", tmp_path / "out")
    assert sum(copied) == sum(f.stat().st_size for f in model.iterdir())
    for name in ("model.safetensors", "config.json"):
        assert (tmp_path / "out" / name).read_bytes() == (model / name).read_bytes()


def test_a_truncated_local_pack_fails_the_pull_naming_the_file(
    store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    from llmops.artifacts import StoreError

    _local(store)
    store.push(make_model(), name="m")
    for _, key, *_ in store.index.packs():
        path = store.backend.local_file(key)
        assert path is not None
        with path.open("r+b") as fh:
            fh.truncate(path.stat().st_size // 2)
    with pytest.raises(StoreError, match=r"bytes \[\d+, \d+\): chunk .* (truncated|corrupt)"):
        store.pull("m@1", tmp_path / "out")
    assert not (tmp_path / "out").exists()
