"""``llmops init``: create a workspace."""

from __future__ import annotations

from typing import Annotated

import typer

from llmops.cli._common import JsonOpt, emit_json


def init(
    directory: Annotated[str, typer.Argument(help="Folder to create the workspace in.")] = ".",
    name: Annotated[str | None, typer.Option(help="Workspace name (default: folder name).")] = None,
    examples: Annotated[
        bool, typer.Option("--examples/--no-examples", help="Copy the example content.")
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Create a workspace: llmops.toml, example prompts/evals/recipes and the registry database."""
    from llmops.workspace import Workspace

    ws = Workspace.init(directory, name=name, examples=examples)
    if json_out:
        emit_json(
            {
                "root": str(ws.root),
                "config": str(ws.root / "llmops.toml"),
                "database": ws.db_url_display,
            }
        )
    else:
        typer.echo(f"workspace ready at {ws.root} (registry: {ws.db_url_display})")
