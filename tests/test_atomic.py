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
