"""The local hash cache: unchanged files are not read again, changed ones always are."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from llmops.artifacts import ArtifactStore, open_backend
from llmops.artifacts import transfer as transfer_module
from llmops.db import Database

from .conftest import ModelMaker, files_equal


def age(folder: Path, seconds: float = 60) -> None:
    """Make files look older than the racy window."""
    past = time.time() - seconds
    for path in folder.rglob("*"):
        os.utime(path, (past, past))


@pytest.fixture
def cached_store(tmp_path: Path) -> ArtifactStore:
    db = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    backend = open_backend("", default_root=tmp_path / "store")
    return ArtifactStore(db, backend, actor="tester", hash_cache=tmp_path / "hashcache.db")


@pytest.fixture
def hashed(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Bytes of source files hashed by pushes (from memory when compressing, read into a reused
    buffer otherwise)."""
    calls: list[int] = []
    real, real_read = transfer_module.hash_chunk, transfer_module.hash_read

    def counting(data: bytes | memoryview) -> str:
        calls.append(len(data))
        return real(data)

    def counting_read(fd: int, offset: int, length: int) -> str:
        calls.append(length)
        return real_read(fd, offset, length)

    monkeypatch.setattr(transfer_module, "hash_chunk", counting)
    monkeypatch.setattr(transfer_module, "hash_read", counting_read)
    return calls


def test_unchanged_files_are_not_read_again(
    cached_store: ArtifactStore, make_model: ModelMaker, hashed: list[int]
) -> None:
    model = make_model()
    age(model)
    first = cached_store.push(model, name="m")
    assert sum(hashed) == first.stats.bytes_total
    hashed.clear()
    again = cached_store.push(model, name="m")
    assert hashed == [] and not again.created
    assert again.version.digest == first.version.digest


def test_a_changed_file_is_read_even_with_its_old_mtime(
    cached_store: ArtifactStore, make_model: ModelMaker, tmp_path: Path
) -> None:
    model = make_model()
    age(model)
    cached_store.push(model, name="m")
    weights = model / "model.safetensors"
    st = weights.stat()
    data = bytearray(weights.read_bytes())
    data[-1] ^= 0xFF  # same size, different content
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime put back; ctime moves on
    second = cached_store.push(model, name="m")
    assert second.created and second.stats.bytes_new > 0
    cached_store.pull("m@2", tmp_path / "out")
    assert files_equal(model, tmp_path / "out")


def test_fresh_files_are_not_cached(
    cached_store: ArtifactStore, make_model: ModelMaker, hashed: list[int]
) -> None:
    model = make_model()  # modified just now: inside the racy window
    cached_store.push(model, name="m")
    hashed.clear()
    cached_store.push(model, name="m")
    assert hashed  # read again: a same-tick rewrite must never pass as unchanged


def test_cache_hits_need_the_chunks_in_this_store(
    cached_store: ArtifactStore, make_model: ModelMaker, tmp_path: Path, hashed: list[int]
) -> None:
    model = make_model()
    age(model)
    cached_store.push(model, name="m")
    other = ArtifactStore(
        cached_store.db,
        open_backend("", default_root=tmp_path / "other-store"),
        actor="t",
        hash_cache=tmp_path / "hashcache.db",
    )
    hashed.clear()
    result = other.push(model, name="m2")
    assert hashed and result.stats.bytes_new == result.stats.bytes_total
    assert other.verify().ok


def test_a_damaged_cache_is_ignored(make_model: ModelMaker, tmp_path: Path) -> None:
    (tmp_path / "hashcache.db").write_bytes(b"this is not a database" * 100)
    db = Database(f"sqlite:///{tmp_path / 'registry.db'}")
    store = ArtifactStore(
        db,
        open_backend("", default_root=tmp_path / "store"),
        actor="t",
        hash_cache=tmp_path / "hashcache.db",
    )
    assert store.push(make_model(), name="m").created
