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


@pytest.mark.parametrize(("offset", "length"), [(0, len(DATA)), (5, 2_500_000), (0, 0)])
def test_hash_read_in_buffer_steps_is_the_blake3_of_those_bytes(
    source: int, monkeypatch: pytest.MonkeyPatch, offset: int, length: int
) -> None:
    monkeypatch.setattr(_ranges, "_BUFFER", 1024 * 1024)  # several reads per range
    expected = blake3.blake3(DATA[offset : offset + length]).hexdigest()
    assert _ranges.hash_read(source, offset, length) == expected


def test_a_source_shortened_while_it_is_read_is_a_short_source_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A user's file is hashed with reads, not a memory map: truncated by another process
    half-way (a trainer rewriting a checkpoint), a map would kill the process with SIGBUS."""
    path = tmp_path / "shrinking.bin"
    path.write_bytes(DATA)
    real = os.preadv

    def then_truncate(fd: int, buffers: list[memoryview], offset: int) -> int:
        got = real(fd, buffers, offset)
        os.truncate(path, 0)
        return got

    monkeypatch.setattr(_ranges, "_BUFFER", 1024 * 1024)
    monkeypatch.setattr(_ranges.os, "preadv", then_truncate)
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(ShortSource, match="file ends at byte"):
            _ranges.hash_read(fd, 0, len(DATA))
    finally:
        os.close(fd)


def test_a_refused_memory_map_falls_back_to_reads(
    source: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refused(*args: object, **kwargs: object) -> object:
        raise OSError(errno.ENODEV, "No such device")  # FUSE with direct_io

    monkeypatch.setattr(_ranges.mmap, "mmap", refused)
    assert hash_range(source, 3, 100_000) == blake3.blake3(DATA[3:100_003]).hexdigest()


def test_copy_file_range_copying_nothing_falls_back(
    source: int, dest: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_ranges.os, "copy_file_range", lambda *args: 0)  # some FUSE, procfs
    copy_range(source, dest, 1000, src_offset=10, dst_offset=0)
    assert os.pread(dest, 2000, 0) == DATA[10:1010]
