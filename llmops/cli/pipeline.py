"""``llmops pipeline ...``: run the main job as cached steps (``pipeline.yaml``), show and list
runs, validate a pipeline file."""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer

from llmops.cli._common import JsonOpt, emit_json, print_table, table, workspace

app = typer.Typer(
    help="Pipelines: prompts, data, training, evals and promotion as cached steps.",
    no_args_is_help=True,
)

PipelineArg = Annotated[
    str, typer.Argument(help="A pipeline file (relative to the workspace root).")
]


@contextlib.contextmanager
def _stdout_to_stderr(*, enabled: bool) -> Iterator[None]:
    """Whatever the steps write to stdout (prints, child processes) goes to stderr."""
    if not enabled:
        yield
        return
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        with contextlib.redirect_stdout(sys.stderr):
            yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


def _summary(run: Any) -> dict[str, Any]:
    """The contract: ``run_id``, ``status``, ``steps`` of ``{name, status, seconds}``."""
    data: dict[str, Any] = run.to_json()
    data["steps"] = [
        {"name": s.name, "status": s.status, "seconds": s.seconds, "error": s.error,
         "outputs": s.outputs, "key": s.key, "cached_from": s.cached_from}
        for s in run.steps
    ]  # fmt: skip
    return data


def _print(run: Any) -> None:
    t = table("step", "status", "seconds", "outputs / error", keep=("step", "status"))
    for s in run.steps:
        shown = s.error or ", ".join(f"{k}={v}" for k, v in s.outputs.items()) or ""
        t.add_row(s.name, s.status, f"{s.seconds:.1f}", shown[:200])
    print_table(t)
    took = f" in {run.seconds:.1f} s" if run.seconds is not None else ""
    typer.echo(f"pipeline {run.pipeline} run {run.run_id}: {run.status}{took}")


@app.command("run")
def run_command(
    pipeline: PipelineArg = "pipeline.yaml",
    from_step: Annotated[
        str | None, typer.Option("--from", help="Start at this step (earlier ones from cache).")
    ] = None,
    only: Annotated[
        str | None, typer.Option("--only", help="Run this step alone (its inputs from cache).")
    ] = None,
    force: Annotated[
        list[str] | None, typer.Option("--force", help="Rerun this step even if cached.")
    ] = None,
    engine: Annotated[
        str, typer.Option("--engine", help="local (this process) or prefect (a Prefect flow).")
    ] = "local",
    if_changed: Annotated[
        list[str] | None,
        typer.Option(
            "--if-changed",
            help="Run only if this step's inputs changed since the last completed run "
            "(repeat for several; 'any': the trigger block's steps, else every step).",
        ),
    ] = None,
    min_new_rows: Annotated[
        int,
        typer.Option(
            "--min-new-rows",
            min=0,
            help="With --if-changed: a data step "
            "counts as changed once its dataset has this many more rows.",
        ),
    ] = 0,
    json_out: JsonOpt = False,
) -> None:
    """Run a pipeline: each step whose inputs did not change is reused, not rerun."""
    ws = workspace()
    quiet = json_out
    if if_changed:
        from llmops.pipelines.spec import load_pipeline
        from llmops.pipelines.triggers import check_trigger

        p = load_pipeline(ws.resolve_path(pipeline))
        names = tuple(n for n in if_changed if n != "any")
        check = check_trigger(ws, p, names, min_new_rows=min_new_rows)
        if not check.changed:
            if json_out:
                emit_json({"run_id": None, "status": "unchanged", "reason": check.reason,
                           "since": check.since, "steps": []})  # fmt: skip
            else:
                typer.echo(f"not running {p.name}: {check.reason}")
            return
        if not quiet:
            print(f"running {p.name}: {check.reason}", file=sys.stderr, flush=True)

    def log(line: str) -> None:
        if not quiet:
            print(line, file=sys.stderr, flush=True)

    with _stdout_to_stderr(enabled=json_out):  # steps may print; stdout is the JSON document's
        run = ws.run_pipeline(
            pipeline, from_step=from_step, only=only, force=tuple(force or ()), log=log,
            engine=engine,
        )  # fmt: skip
    if json_out:
        emit_json(_summary(run))
    else:
        _print(run)
    if run.status != "completed":
        raise typer.Exit(1)


@app.command("show")
def show_command(
    run_id: Annotated[str, typer.Argument(help="A pipeline run id, or latest.")] = "latest",
    json_out: JsonOpt = False,
) -> None:
    """One pipeline run: each step's status, time, outputs, cache key and error."""
    records = workspace().pipelines
    records._reap()  # a run whose process died shows as interrupted, not running
    run = records.get(run_id)
    if json_out:
        emit_json(_summary(run))
        return
    _print(run)
    for s in run.steps:
        if s.key:
            source = f" (cached from {s.cached_from})" if s.cached_from else ""
            typer.echo(f"  {s.name}: key {s.key}{source}")


@app.command("list")
def list_command(
    limit: Annotated[int, typer.Option("--limit", min=1, help="At most this many.")] = 20,
    json_out: JsonOpt = False,
) -> None:
    """Pipeline runs, newest first."""
    records = workspace().pipelines
    records._reap()
    runs = records.list(limit=limit)
    if json_out:
        emit_json([_summary(r) for r in runs])
        return
    t = table("run", "pipeline", "status", "started", "ran/cached/failed", keep=("run",))
    for r in runs:
        counts = [sum(s.status == k for s in r.steps) for k in ("ran", "cached", "failed")]
        t.add_row(r.run_id, r.pipeline, r.status, r.started_at.strftime("%Y-%m-%d %H:%M:%S"),
                  "/".join(map(str, counts)))  # fmt: skip
    print_table(t)


@app.command("validate")
def validate_command(pipeline: PipelineArg = "pipeline.yaml", json_out: JsonOpt = False) -> None:
    """Check a pipeline file (every problem at once, with lines) and print its run order."""
    from llmops.pipelines.spec import load_pipeline

    ws = workspace()
    p = load_pipeline(ws.resolve_path(pipeline))
    if json_out:
        emit_json({"pipeline": p.name, "digest": p.digest, "order": list(p.order)})
        return
    typer.echo(f"{p.path}: ok, {len(p.order)} steps: {' -> '.join(p.order)}")


@app.command("compile")
def compile_command(
    pipeline: PipelineArg = "pipeline.yaml",
    to: Annotated[str, typer.Option("--to", help="The orchestrator: kfp.")] = "kfp",
    output: Annotated[str, typer.Option("-o", "--output", help="The spec file to write.")] = (
        "pipeline.kfp.yaml"
    ),
    image: Annotated[
        str, typer.Option("--image", help="The image each task runs (llmops + the workspace).")
    ] = "llmops:latest",
    workspace_path: Annotated[
        str, typer.Option("--workspace-path", help="The workspace's path inside the image.")
    ] = "/workspace",
    json_out: JsonOpt = False,
) -> None:
    """Compile a pipeline for an orchestrator: a Kubeflow Pipelines spec, one task per step."""
    from llmops._atomic import write_atomic
    from llmops.cli._common import output_path
    from llmops.errors import InputError
    from llmops.pipelines.engines import compile_kfp
    from llmops.pipelines.spec import load_pipeline

    if to != "kfp":
        raise InputError(f"--to {to!r}: unknown target", hint="use --to kfp")
    target = output_path(output)
    ws = workspace()
    p = load_pipeline(ws.resolve_path(pipeline))
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        staged = Path(tmp) / "spec.yaml"
        tasks = compile_kfp(p, staged, image=image, workspace=workspace_path)
        write_atomic(target, [staged.read_text(encoding="utf-8")])
    if json_out:
        emit_json({"output": str(target), "tasks": tasks, "image": image})
        return
    typer.echo(f"wrote {target}: Kubeflow Pipelines spec with {len(tasks)} tasks")
