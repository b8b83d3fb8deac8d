"""``llmops train``, ``llmops recipes ...``, ``llmops runs ...``: fine-tuning from the terminal."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from llmops.cli._common import JsonOpt, console, emit_json, workspace

SetOpt = Annotated[
    list[str] | None,
    typer.Option(
        "--set", help="Override a recipe field: dotted.key=value (YAML value). Repeatable."
    ),
]

recipes_app = typer.Typer(
    help="Fine-tuning recipes: validate before running.", no_args_is_help=True
)
runs_app = typer.Typer(help="Training runs: list and inspect.", no_args_is_help=True)


def train(
    recipe: Annotated[str | None, typer.Argument(help="Recipe YAML file.")] = None,
    overrides: SetOpt = None,
    resume: Annotated[
        str | None, typer.Option("--resume", help="Continue a killed or failed run by its id.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run a fine-tuning recipe: data gate, training with checkpoints, adapter into the store."""
    from llmops.errors import InputError
    from llmops.train.recipe import parse_overrides

    if (recipe is None) == (resume is None):
        raise InputError("give a RECIPE file or --resume RUN_ID", hint="see `llmops train --help`")
    ws = workspace()
    result = ws.train(
        recipe,
        overrides=parse_overrides(overrides or []),
        resume=resume,
        live=not json_out and sys.stderr.isatty(),
    )
    if json_out:
        emit_json(result.to_json())
        return
    run, out = result.run, console()
    out.print(
        f"run {run.run_id}: {run.status} after {run.step} steps, final loss {run.final_loss:.4f}"
    )
    if result.adapter is not None:
        out.print(f"adapter {result.adapter.ref} ({result.adapter.digest[:19]})")
    if result.merged is not None:
        out.print(f"merged model {result.merged.ref}")
    out.print(f"details: llmops runs show {run.run_id}")


@recipes_app.command("validate")
def validate_recipes(
    paths: Annotated[list[str], typer.Argument(help="Recipe files.")],
    overrides: SetOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Check recipes against the schema (every problem, with lines); exit 2 on the first bad one."""
    from llmops.train.recipe import load_recipe, parse_overrides

    sets = parse_overrides(overrides or [])
    checked: list[dict[str, Any]] = []
    for path in paths:
        spec = load_recipe(path, overrides=sets)
        checked.append({"path": path, "ok": True, "recipe_hash": spec.digest(),
                        "method": spec.method, "trainer": spec.trainer})  # fmt: skip
    if json_out:
        emit_json({"ok": True, "recipes": checked})
        return
    for item in checked:
        typer.echo(f"ok  {item['path']}  ({item['method']} + {item['trainer']})")


class RunStatusOption(StrEnum):
    """``--status`` values (typer checks them)."""

    running = "running"
    interrupted = "interrupted"
    completed = "completed"
    failed = "failed"


@runs_app.command("list")
def list_runs(
    status: Annotated[
        RunStatusOption | None,
        typer.Option("--status", help="running, interrupted, completed or failed."),
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest runs to show.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Training runs, newest first."""
    runs = workspace().train_runs.list(status=status.value if status else None, limit=limit)
    if json_out:
        emit_json([r.to_json(full=False) for r in runs])
        return
    from rich.table import Table

    table = Table("run", "status", "steps", "final loss", "adapter", "recipe", "started")
    for r in runs:
        loss = f"{r.final_loss:.4f}" if r.final_loss is not None else "-"
        table.add_row(r.run_id, r.status, f"{r.step}/{r.max_steps}", loss, r.adapter_ref or "-",
                      r.recipe_name, r.started_at.strftime("%Y-%m-%d %H:%M"))  # fmt: skip
    console().print(table)


@runs_app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="Run id (run-...).")],
    json_out: JsonOpt = False,
) -> None:
    """One run: inputs (recipe hash, dataset fingerprint, base model digest), metrics, output."""
    ws = workspace()
    run = ws.train_runs.get(run_id)
    metrics = ws.train_runs.metrics(run_id)
    if json_out:
        emit_json(run.to_json(metrics))
        return
    out = console()
    out.print(f"run {run.run_id}  {run.status}  (attempts: {run.attempts})")
    if run.status in ("interrupted", "failed"):
        out.print(f"  resume it: llmops train --resume {run.run_id}")
    for label, value in (
        ("recipe", f"{run.recipe_name}  {run.recipe_hash[:19]}"),
        ("base model", f"{run.base_model}  {run.base_model_digest[:19]}"),
        ("dataset", f"{run.dataset_ref}  {run.dataset_fingerprint[:19]}"),
        ("steps", f"{run.step}/{run.max_steps} (last checkpoint: {run.last_checkpoint_step})"),
        ("final loss", run.final_loss),
        ("adapter", run.adapter_ref),
        ("merged", run.merged_ref),
        ("error", run.error),
        ("started", run.started_at.isoformat()),
        ("ended", run.ended_at.isoformat() if run.ended_at else None),
    ):
        if value is not None:
            out.print(f"  {label:<11} {value}")
    train_rows = [m for m in metrics if m["split"] == "train"]
    if train_rows:
        out.print("  step  loss      lr        tok/s")
        for m in train_rows[-10:]:
            tps = m.get("tokens_per_s")
            speed = "" if tps is None else f"{tps:.0f}"
            out.print(f"  {m['step']:>4}  {m.get('loss', float('nan')):<8.4f}  "
                      f"{m.get('learning_rate', 0):<8.2e}  {speed}")  # fmt: skip
