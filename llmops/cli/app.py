"""The root ``llmops`` app: global options and the command groups."""

from __future__ import annotations

from typing import Annotated

import typer

from llmops._version import __version__
from llmops.cli import artifacts as artifacts_cmd
from llmops.cli import canary as canary_cmd
from llmops.cli import dashboard as dashboard_cmd
from llmops.cli import data as data_cmd
from llmops.cli import evals as evals_cmd
from llmops.cli import gateway as gateway_cmd
from llmops.cli import init as init_cmd
from llmops.cli import models as models_cmd
from llmops.cli import pipeline as pipeline_cmd
from llmops.cli import prompts as prompts_cmd
from llmops.cli import review as review_cmd
from llmops.cli import serve as serve_cmd
from llmops.cli import traffic as traffic_cmd
from llmops.cli import train as train_cmd
from llmops.cli._common import state

app = typer.Typer(
    name="llmops",
    help="llmops: prompts, fine-tuning, artifacts, evals, a registry and serving for LLM teams.",
    no_args_is_help=True,
    add_completion=True,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"llmops {__version__}")
        raise typer.Exit(0)


@app.callback()
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


app.command("init")(init_cmd.init)
app.add_typer(prompts_cmd.app, name="prompts")
app.add_typer(artifacts_cmd.app, name="artifacts")
app.add_typer(models_cmd.app, name="models")
app.add_typer(data_cmd.app, name="data")
app.command("train")(train_cmd.train)
app.add_typer(train_cmd.recipes_app, name="recipes")
app.add_typer(train_cmd.runs_app, name="runs")
app.add_typer(evals_cmd.app, name="eval")
app.add_typer(review_cmd.app, name="review")
app.command("lineage")(models_cmd.lineage)
app.add_typer(serve_cmd.app, name="serve")
app.add_typer(gateway_cmd.app, name="gateway")
app.add_typer(traffic_cmd.app, name="traffic")
app.add_typer(canary_cmd.app, name="canary")
app.add_typer(pipeline_cmd.app, name="pipeline")
app.command("app")(dashboard_cmd.app_command)
