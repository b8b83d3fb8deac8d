"""``llmops train``, ``llmops recipes ...``, ``llmops runs ...``: fine-tuning from the terminal."""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any

import typer

from llmops.cli._common import JsonOpt, console, emit_json, print_table, table, workspace

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
    """Check recipes against the schema: every file, every problem with its line; exit 2 when
    any is bad."""
    from llmops.errors import RecipeError
    from llmops.train.recipe import load_recipe, parse_overrides

    sets = parse_overrides(overrides or [])
    checked: list[dict[str, Any]] = []
    for path in paths:
        try:
            spec = load_recipe(path, overrides=sets)
        except RecipeError as exc:
            checked.append({"path": path, "ok": False, "error": exc.one_line()})
            continue
        checked.append({"path": path, "ok": True, "recipe_hash": spec.digest(),
                        "method": spec.method, "trainer": spec.trainer})  # fmt: skip
    bad = [item for item in checked if not item["ok"]]
    if json_out:
        emit_json({"ok": not bad, "recipes": checked})
    else:
        for item in checked:
            if item["ok"]:
                typer.echo(f"ok  {item['path']}  ({item['method']} + {item['trainer']})")
            else:
                typer.echo(f"error: {item['error']}", err=True)
    if bad:
        raise typer.Exit(2)


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
    recipe: Annotated[str | None, typer.Option("--recipe", help="Recipe name.")] = None,
    base_model: Annotated[
        str | None, typer.Option("--base-model", help="Base model as recipes name it, or digest.")
    ] = None,
    dataset: Annotated[
        str | None, typer.Option("--dataset", help="Dataset artifact ref or fingerprint.")
    ] = None,
    params: Annotated[
        list[str] | None,
        typer.Option("--param", help="Resolved recipe value: dotted.key=value. Repeatable."),
    ] = None,
    since: Annotated[
        str | None, typer.Option("--since", help="Started since: ISO time or an age (7d, 12h).")
    ] = None,
    limit: Annotated[int, typer.Option("--limit", help="Newest runs to show.")] = 50,
    json_out: JsonOpt = False,
) -> None:
    """Training runs, newest first, filtered by any of the options."""
    from llmops.train.recipe import parse_overrides

    runs = workspace().train_runs.search(
        status=status.value if status else None,
        recipe=recipe,
        base_model=base_model,
        dataset=dataset,
        params=parse_overrides(params or [], option="--param"),
        since=since,
        limit=limit,
    )
    if json_out:
        emit_json([r.to_json(full=False) for r in runs])
        return
    rows = table(
        "run", "status", "steps", "final loss", "eval loss", "adapter", "recipe", "started",
        keep=("run", "adapter"),
    )  # fmt: skip
    for r in runs:
        rows.add_row(r.run_id, r.status, f"{r.step}/{r.max_steps}", _metric(r.final_loss) or "-",
                     _metric(r.final_metrics.get("eval_loss")) or "-", r.adapter_ref or "-",
                     r.recipe_name, r.started_at.strftime("%Y-%m-%d %H:%M"))  # fmt: skip
    print_table(rows)


@runs_app.command("show")
def show_run(
    run_id: Annotated[str, typer.Argument(help="Run id (run-...), or latest.")],
    json_out: JsonOpt = False,
) -> None:
    """One run: inputs (recipe hash, dataset fingerprint, base model digest), metrics, output."""
    ws = workspace()
    run = ws.train_runs.get(run_id)
    metrics = ws.train_runs.metrics(run.run_id)
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
        ("final loss", None if run.final_loss is None else f"{run.final_loss:.4f}"),
        ("eval loss", _metric(run.final_metrics.get("eval_loss"))),
        ("adapter", run.adapter_ref),
        ("merged", run.merged_ref),
        ("error", run.error),
        ("started", run.started_at.isoformat()),
        ("ended", run.ended_at.isoformat() if run.ended_at else None),
    ):
        if value is not None:
            out.print(f"  {label:<11} {value}")
    train_rows = [m for m in metrics if m["split"] == "train"]
    evals = {m["step"]: m for m in metrics if m["split"] == "eval"}
    if not train_rows:
        return
    shown = train_rows[-_SHOWN_STEPS:]
    if len(train_rows) > len(shown):
        out.print(f"  last {len(shown)} of {len(train_rows)} logged steps (--json for all):")
    out.print("  step  loss      eval loss  lr        tok/s")
    for m in shown:
        tps = m.get("tokens_per_s")
        speed = "" if tps is None else f"{tps:.0f}"
        eval_loss = _metric(evals.get(m["step"], {}).get("eval_loss")) or "-"
        out.print(f"  {m['step']:>4}  {_metric(m.get('loss')) or '-':<8}  {eval_loss:<9}  "
                  f"{m.get('learning_rate', 0):<8.2e}  {speed}")  # fmt: skip


_SHOWN_STEPS = 10


def _metric(value: float | None) -> str | None:
    return None if value is None else f"{value:.4f}"
