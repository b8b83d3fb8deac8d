"""One status line, redrawn in place, for long steps: on stderr in a terminal, as an output
that updates itself in a Jupyter notebook (no carriage returns or escape codes in the cell).

Training (step, loss, learning rate, tokens/s) and eval runs (cases, errors, calls) use it; the
CLI creates one only when stderr is a terminal, so pipes, logs and ``--json`` stay clean, and the
Python API creates one by default only in a notebook.
"""

from __future__ import annotations

import importlib
import sys
import time
from typing import Any

__all__ = ["LiveLine", "bar", "in_notebook"]


def in_notebook() -> bool:
    """Whether this is a Jupyter kernel (where outputs can update in place)."""
    shell = sys.modules.get("IPython")
    if shell is None:
        return False
    ip = shell.get_ipython()
    return ip is not None and type(ip).__name__ == "ZMQInteractiveShell"


class LiveLine:
    """Redraws one line at most every ``interval_s`` (the last draw always shows)."""

    def __init__(self, *, interval_s: float = 0.2) -> None:
        self.started = time.perf_counter()
        self.interval_s = interval_s
        self._last = 0.0
        self._handle: Any = None
        if in_notebook():
            display: Any = importlib.import_module("IPython.display")
            self._pretty = display.Pretty
            self._handle = display.display(display.Pretty(""), display_id=True)

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
        if self._handle is not None:
            self._handle.update(self._pretty(text))
            return
        sys.stderr.write(f"\r{text}\033[K")
        sys.stderr.flush()

    def close(self) -> None:
        """End the line."""
        if self._handle is not None:
            return
        sys.stderr.write("\n")
        sys.stderr.flush()


def bar(done: int, total: int, width: int = 24) -> str:
    """``[#####-----]`` for ``done`` of ``total``."""
    filled = int(width * done / max(total, 1))
    return "[" + "#" * filled + "-" * (width - filled) + "]"
