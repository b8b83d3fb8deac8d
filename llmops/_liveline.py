"""One status line on stderr, redrawn in place, for long commands on a terminal.

Training (step, loss, learning rate, tokens/s) and eval runs (cases, errors, calls) use it; the
CLI creates one only when stderr is a terminal, so pipes, logs and ``--json`` stay clean.
"""

from __future__ import annotations

import sys
import time

__all__ = ["LiveLine", "bar"]


class LiveLine:
    """Redraws one line on stderr, at most every ``interval_s`` (the last draw always shows)."""

    def __init__(self, *, interval_s: float = 0.2) -> None:
        self.started = time.perf_counter()
        self.interval_s = interval_s
        self._last = 0.0

    @property
    def elapsed(self) -> float:
        """Seconds since the line was created."""
        return time.perf_counter() - self.started

    def show(self, text: str, *, force: bool = False) -> None:
        """Replace the line with ``text`` (skipped when redrawn too recently, unless ``force``)."""
        now = time.perf_counter()
        if not force and now - self._last < self.interval_s:
            return
        self._last = now
        sys.stderr.write(f"\r{text}\033[K")
        sys.stderr.flush()

    def close(self) -> None:
        """End the line."""
        sys.stderr.write("\n")
        sys.stderr.flush()


def bar(done: int, total: int, width: int = 24) -> str:
    """``[#####-----]`` for ``done`` of ``total``."""
    filled = int(width * done / max(total, 1))
    return "[" + "#" * filled + "-" * (width - filled) + "]"
