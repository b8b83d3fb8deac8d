"""The root ``llmops`` app: global options and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from llmops._version import __version__
from llmops.cli._common import state


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmops {__version__}")
        raise typer.Exit(0)


def _root(
    workspace: Annotated[
        str | None,
        typer.Option(
            "--workspace",
            "-w",
            help="Workspace folder (else $LLMOPS_WORKSPACE, else the nearest llmops.toml upward).",
        ),
    ] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    verbose: Annotated[
        bool,
        typer.Option(
            "--verbose", "-v", help="Also other libraries' progress bars and deprecation warnings."
        ),
    ] = False,
    version: Annotated[
        bool,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = False,
) -> None:
    state.workspace = workspace
    state.debug = debug
    del verbose  # acted on before the app runs (llmops.cli._main): other libraries' noise


ENTRIES: list[tuple[str, str, str]] = [
    ("init", "llmops.cli.init", "init"),
    ("prompts", "llmops.cli.prompts", "app"),
    ("artifacts", "llmops.cli.artifacts", "app"),
    ("models", "llmops.cli.models", "app"),
    ("data", "llmops.cli.data", "app"),
    ("train", "llmops.cli.train", "train"),
    ("recipes", "llmops.cli.train", "recipes_app"),
    ("runs", "llmops.cli.train", "runs_app"),
    ("eval", "llmops.cli.evals", "app"),
    ("review", "llmops.cli.review", "app"),
    ("lineage", "llmops.cli.models", "lineage"),
    ("serve", "llmops.cli.serve", "app"),
    ("gateway", "llmops.cli.gateway", "app"),
    ("traffic", "llmops.cli.traffic", "app"),
    ("canary", "llmops.cli.canary", "app"),
    ("pipeline", "llmops.cli.pipeline", "app"),
    ("app", "llmops.cli.dashboard", "app_command"),
]
"""Top-level commands and groups in the order help lists them: ``(name, module, attribute)``;
an attribute that is a ``typer.Typer`` is a group, anything else a command."""

HELP = "llmops: prompts, fine-tuning, artifacts, evals, a registry and serving for LLM teams."

NAMES = frozenset(name for name, _, _ in ENTRIES)

COMMANDS = frozenset({"init", "train", "lineage", "app"})
"""The entries that are commands; the others are groups (``llmops prompts ...``)."""

GROUPS = NAMES - COMMANDS


def build(only: str | None = None) -> typer.Typer:
    """The CLI app with every command and group, or with ``only`` that one (a line naming one
    group imports and builds only its module: the others cost ~100 ms to import on every
    start)."""
    import importlib

    app = typer.Typer(
        name="llmops",
        help=HELP,
        no_args_is_help=True,
        add_completion=True,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
    )
    app.callback()(_root)
    for name, module, attribute in ENTRIES:
        if only is not None and name != only:
            continue
        found = getattr(importlib.import_module(module), attribute)
        if isinstance(found, typer.Typer):
            app.add_typer(found, name=name)
        else:
            app.command(name)(found)
    return app


def __getattr__(name: str) -> typer.Typer:
    if name != "app":
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return build()  # the whole app (tests, completion, docs)
