"""Hashing and copying file ranges without user-space copies, and the fallbacks."""

from __future__ import annotations

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import blake3
import pytest

from llmops.artifacts import _ranges
from llmops.artifacts._ranges import ShortSource, copy_range, hash_range

DATA = os.urandom(3 * 1024 * 1024 + 123)


@pytest.fixture
def source(tmp_path: Path) -> Iterator[int]:
    path = tmp_path / "src.bin"
    path.write_bytes(DATA)
    fd = os.open(path, os.O_RDONLY)
    yield fd
    os.close(fd)


@pytest.fixture
def dest(tmp_path: Path) -> Iterator[int]:
    fd = os.open(tmp_path / "dst.bin", os.O_RDWR | os.O_CREAT, 0o600)
    yield fd
    os.close(fd)


@pytest.mark.parametrize(("offset", "length"), [(0, 1), (1, 4095), (4097, 1_000_000), (0, 0)])
def test_hash_range_is_the_blake3_of_those_bytes(source: int, offset: int, length: int) -> None:
    expected = blake3.blake3(DATA[offset : offset + length]).hexdigest()
    assert hash_range(source, offset, length) == expected


def test_hash_range_past_the_end_is_a_short_source(source: int) -> None:
    with pytest.raises(ShortSource, match="ends before byte"):
        hash_range(source, len(DATA) - 10, 11)


def _refuse(*args: object) -> int:
    raise OSError(errno.EXDEV, "Invalid cross-device link")


@pytest.mark.parametrize("refused", [[], ["copy_file_range"], ["copy_file_range", "sendfile"]])
def test_copy_range_copies_exactly_with_every_fallback(
    source: int, dest: int, monkeypatch: pytest.MonkeyPatch, refused: list[str]
) -> None:
    for name in refused:
        monkeypatch.setattr(_ranges.os, name, _refuse)
    os.pwrite(dest, b"head", 0)
    copy_range(source, dest, 2_000_000, src_offset=777, dst_offset=4)
    copy_range(source, dest, 10, src_offset=0, dst_offset=4 + 2_000_000)
    os.lseek(dest, 0, os.SEEK_SET)
    written = os.pread(dest, 3_000_000, 0)
    assert written == b"head" + DATA[777 : 777 + 2_000_000] + DATA[:10]


@pytest.mark.parametrize("refused", [[], ["copy_file_range"], ["copy_file_range", "sendfile"]])
def test_copy_range_past_the_source_end_is_a_short_source(
    source: int, dest: int, monkeypatch: pytest.MonkeyPatch, refused: list[str]
) -> None:
    for name in refused:
        monkeypatch.setattr(_ranges.os, name, _refuse)
    with pytest.raises(ShortSource, match="source ends at byte"):
        copy_range(source, dest, 100, src_offset=len(DATA) - 50, dst_offset=0)


def test_a_full_disk_is_not_taken_for_a_refusal(
    source: int, dest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def full(*args: object) -> int:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(_ranges.os, "copy_file_range", full)
    with pytest.raises(OSError, match="No space left"):
        copy_range(source, dest, 100, src_offset=0, dst_offset=0)
