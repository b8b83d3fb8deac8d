"""Backends: the object interface the store writes through, on local disk and on S3."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.artifacts import open_backend
from llmops.artifacts.backends import Backend, LocalBackend, StoreError
from llmops.errors import ConfigError


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.integration)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Backend:
    if request.param == "local":
        return open_backend("", default_root=tmp_path / "store")
    bucket = request.getfixturevalue("s3_bucket")
    return open_backend(f"s3://{bucket}/prefix", default_root=tmp_path / "store")


def test_objects_round_trip_with_ranges_listing_and_deletion(
    backend: Backend, tmp_path: Path
) -> None:
    backend.put_bytes("packs/ab/x.pack", b"0123456789")
    source = tmp_path / "file.bin"
    source.write_bytes(b"abcdef")
    backend.put_file("manifests/cd/y.json", source)
    assert backend.get_bytes("packs/ab/x.pack") == b"0123456789"
    assert backend.get_range("packs/ab/x.pack", 2, 3) == b"234"
    assert backend.exists("manifests/cd/y.json") and not backend.exists("packs/zz/none")
    assert [o.key for o in backend.list("packs/")] == ["packs/ab/x.pack"]
    assert [o.size for o in backend.list("manifests/")] == [6]
    backend.delete("packs/ab/x.pack")
    backend.delete("packs/ab/x.pack")  # deleting twice is fine
    assert not backend.exists("packs/ab/x.pack")
    with pytest.raises(StoreError, match="missing"):
        backend.get_bytes("packs/ab/x.pack")


def test_short_reads_are_errors(backend: Backend) -> None:
    backend.put_bytes("packs/ab/short.pack", b"abc")
    with pytest.raises(StoreError, match=r"truncated|short read"):
        backend.get_range("packs/ab/short.pack", 1, 10)


@pytest.mark.parametrize("key", ["../escape", "/abs", "a//b", "a/./b", "a\\b", ""])
def test_keys_cannot_escape_the_store(tmp_path: Path, key: str) -> None:
    local = LocalBackend(tmp_path / "store")
    with pytest.raises(ValueError, match="invalid object key"):
        local.put_bytes(key, b"x")
    assert not (tmp_path / "escape").exists()


def test_store_urls(tmp_path: Path) -> None:
    assert isinstance(open_backend(f"file://{tmp_path}/s", default_root=tmp_path), LocalBackend)
    assert isinstance(open_backend(str(tmp_path / "t"), default_root=tmp_path), LocalBackend)
    with pytest.raises(ConfigError, match="unknown store URL scheme 'ftp'"):
        open_backend("ftp://host/x", default_root=tmp_path)
