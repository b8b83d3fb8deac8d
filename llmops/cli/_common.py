"""Shared CLI pieces: global state, the ``--json`` option, output helpers."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

    from llmops.workspace import Workspace

__all__ = [
    "JsonOpt",
    "State",
    "console",
    "emit_json",
    "output_path",
    "print_table",
    "state",
    "steps",
    "table",
    "workspace",
]

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


# Wide enough that nothing piped (to grep, a file, a CI log) is ever folded or cut.
_PIPE_WIDTH = 4096


def console(*, min_width: int = 0) -> Console:
    """A rich console on stdout for human output (never narrower than ``min_width``)."""
    from rich.console import Console

    width = None if sys.stdout.isatty() else _PIPE_WIDTH
    if min_width:
        from shutil import get_terminal_size

        width = max(width or get_terminal_size().columns, min_width)
    return Console(highlight=False, soft_wrap=True, width=width)


@contextmanager
def steps(*, enabled: bool) -> Iterator[Callable[[str], None]]:
    """``step(text)`` announces a long step from its first second: a spinner with the step and
    the elapsed time on a terminal, one line per step on stderr otherwise (off for --json)."""
    if not enabled:
        yield lambda _text: None
        return
    if not sys.stderr.isatty():
        yield lambda text: print(f"{text} ...", file=sys.stderr, flush=True)
        return
    from rich.console import Console

    with Console(stderr=True).status("starting ...") as status:
        yield lambda text: status.update(f"{text} ...")


def output_path(output: str) -> Path:
    """A file to write given as ``--output``, checked before anything is written.

    Raises:
        InputError: The name is empty, a directory, or in a folder that does not exist.
    """
    from llmops.errors import InputError

    path = Path(output)
    if not output.strip():
        raise InputError("--output is empty", hint="give a file name, or leave it out for stdout")
    if path.is_dir():
        raise InputError(f"--output {output!r} is a directory", hint="give a file name in it")
    if not path.parent.is_dir():
        raise InputError(f"--output {output!r}: folder {str(path.parent)!r} does not exist")
    return path


def table(*columns: str, keep: tuple[str, ...] = ()) -> Table:
    """A table whose ``keep`` columns (ids, names, references) are never folded or cut: the
    other columns fold first (see :func:`print_table`)."""
    from rich.table import Table

    t = Table()
    for name in columns:
        t.add_column(name, no_wrap=name in keep, overflow="fold")
    return t


def print_table(t: Table) -> None:
    """Print ``t`` no narrower than its unbreakable columns need (a narrow terminal wraps the
    lines instead of losing characters of an id)."""
    from rich.cells import cell_len

    needed = 1
    for column in t.columns:
        cells = [str(c) for c in column.cells] + [str(column.header)]
        needed += 3 + (max(map(cell_len, cells)) if column.no_wrap else 6)
    console(min_width=needed).print(t)
