"""Shared CLI pieces: global state, the ``--json`` option, output helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console

    from llmops.workspace import Workspace

__all__ = ["JsonOpt", "State", "console", "emit_json", "state", "workspace"]

JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print one JSON document on stdout and nothing else there.")
]


@dataclass
class State:
    """Options given before the command group."""

    workspace: str | None = None
    debug: bool = False
    opened: list[Workspace] = field(default_factory=list)

    def close(self) -> None:
        """Release the database connections of every workspace a command opened."""
        while self.opened:
            self.opened.pop().close()


state = State()


def workspace() -> Workspace:
    """Open the workspace the global options and environment point at."""
    from llmops.workspace import Workspace

    ws = Workspace.open(state.workspace)
    state.opened.append(ws)
    return ws


def emit_json(data: Any) -> None:
    """Print ``data`` as one JSON document on stdout."""
    sys.stdout.write(json.dumps(data, indent=2, ensure_ascii=False, default=str) + "\n")


def console() -> Console:
    """A rich console on stdout for human output."""
    from rich.console import Console

    return Console(highlight=False, soft_wrap=True)
