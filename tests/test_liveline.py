"""The live status line: redraws in place, throttled, always shows the last state."""

from __future__ import annotations

import pytest

from llmops._liveline import LiveLine, bar


def test_redraws_in_place_and_throttles(capsys: pytest.CaptureFixture[str]) -> None:
    line = LiveLine(interval_s=60)
    line.show("1/3")
    line.show("2/3")  # within the interval: skipped
    line.show("3/3", force=True)
    line.close()
    err = capsys.readouterr().err
    assert err == "\r1/3\x1b[K\r3/3\x1b[K\n"


def test_bar() -> None:
    assert bar(1, 4, width=8) == "[##------]"
    assert bar(0, 0, width=2) == "[--]"
