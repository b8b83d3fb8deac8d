"""All-or-nothing file writes: the old file or the new one, never half, no temporary left."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops._atomic import write_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_nothing_behind(tmp_path: Path) -> None:
    target = tmp_path / "out.csv"
    target.write_text("old\n")

    def pieces() -> Iterator[str]:
        yield "new half"
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError, match="killed mid-write"):
        write_atomic(target, pieces())
    assert target.read_text() == "old\n" and [p.name for p in tmp_path.iterdir()] == ["out.csv"]
    write_atomic(target, ["a", "b"])
    assert target.read_text() == "ab" and len(list(tmp_path.iterdir())) == 1


def test_links_keep_pointing_and_devices_are_written_not_replaced(tmp_path: Path) -> None:
    real = tmp_path / "real.md"
    real.write_text("old")
    link = tmp_path / "link.md"
    link.symlink_to(real)
    write_atomic(link, ["new"])
    assert link.is_symlink() and real.read_text() == "new"
    fifo_free = tmp_path / "null"
    fifo_free.symlink_to("/dev/null")
    write_atomic(fifo_free, ["into the device"])  # /dev/null stays a device
    assert Path("/dev/null").is_char_device() and fifo_free.is_symlink()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path, ["x"])
