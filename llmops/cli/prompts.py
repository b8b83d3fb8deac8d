"""``llmops prompts ...``: versioned prompts from the command line."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmops.cli._common import JsonOpt, console, emit_json, print_table, table, workspace

if TYPE_CHECKING:
    from llmops.prompts import PromptSpec

app = typer.Typer(
    help="Versioned prompts: push files, label versions, render, diff.", no_args_is_help=True
)


@app.command()
def push(
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="Prompt files or folders (default: the workspace's prompts/)."),
    ] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="Commit message.")] = "",
    json_out: JsonOpt = False,
) -> None:
    """Push prompt files: each changed prompt becomes a new immutable version."""
    results = workspace().prompts.push_files(paths or None, message=message)
    if json_out:
        emit_json([r.to_json() for r in results])
        return
    out = console()
    for r in results:
        state = "new version" if r.created else "unchanged, already"
        out.print(f"{r.name}: {state} {r.version}  [dim]{r.digest[:19]}[/dim]")


IncludeBuiltin = Annotated[
    bool,
    typer.Option(
        "--include-builtin", help="Also llmops' own prompts (llmops-judge-*, the judge prompts)."
    ),
]


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="List the versions of this prompt.")] = None,
    include_builtin: IncludeBuiltin = False,
    json_out: JsonOpt = False,
) -> None:
    """List prompts, or the versions of one prompt."""
    prompts = workspace().prompts
    if name is None:
        summaries = prompts.list(include_builtin=include_builtin)
        if json_out:
            emit_json([s.to_json() for s in summaries])
            return
        rows = table("name", "latest", "labels", keep=("name",))
        for s in summaries:
            labels = ", ".join(f"{k}→{v}" for k, v in s.labels.items())
            rows.add_row(s.name, str(s.latest_version), labels)
        print_table(rows)
        return
    versions = prompts.versions(name)
    if json_out:
        emit_json([v.to_json() for v in versions])
        return
    rows = table(
        "version", "digest", "labels", "author", "created", "message", keep=("version", "digest")
    )
    for v in versions:
        rows.add_row(
            f"{v.version}{' (archived)' if v.archived else ''}",
            v.digest[7:19],
            ", ".join(v.labels),
            v.author,
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            v.message,
        )
    print_table(rows)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@LABEL.")],
    json_out: JsonOpt = False,
) -> None:
    """Show one prompt version: messages, variables, model parameters, labels."""
    from llmops.prompts import dump_prompt_file

    found = workspace().prompts.get(ref, cache=False)
    if json_out:
        emit_json(found.to_json())
        return
    out = console()
    labels = ", ".join(found.labels) or "none"
    out.print(f"[bold]{found.ref}[/bold]  {found.digest}")
    out.print(
        f"labels: {labels}   author: {found.author}   created: {found.created_at:%Y-%m-%d %H:%M}"
    )
    if found.message:
        out.print(f"message: {found.message}")
    out.print()
    out.print(dump_prompt_file(found.spec), markup=False)


def _parse_bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes", "on"):
        return True
    if lowered in ("false", "0", "no", "off"):
        return False
    raise ValueError(text)


def _parse_any(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


_PARSERS: dict[str, Callable[[str], Any]] = {
    "string": str,
    "integer": int,
    "number": float,
    "boolean": _parse_bool,
    "list": json.loads,
    "object": json.loads,
    "any": _parse_any,
}


def _coerce(spec: PromptSpec, raw: str) -> tuple[str, Any]:
    """Turn ``--var KEY=VALUE`` into a typed value using the variable's declared type."""
    from llmops.errors import PromptRenderError

    key, sep, text = raw.partition("=")
    if not sep:
        raise PromptRenderError(
            f"--var {raw!r} is not KEY=VALUE", hint="write e.g. --var text=hello"
        )
    var = spec.variables.get(key)
    if var is None:
        declared = ", ".join(spec.variables) or "none"
        raise PromptRenderError(
            f"--var {key}: prompt {spec.name!r} has no variable {key!r} (declared: {declared})"
        )
    try:
        return key, _PARSERS[var.type](text)
    except ValueError:  # json.JSONDecodeError is a ValueError too
        raise PromptRenderError(
            f"--var {key}={text!r}: expected {var.type}",
            hint="lists and objects are given as JSON, booleans as true/false",
        ) from None


@app.command()
def render(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@LABEL.")],
    var: Annotated[
        list[str] | None,
        typer.Option("--var", help="KEY=VALUE; repeat. Lists/objects as JSON."),
    ] = None,
    vars_file: Annotated[
        Path | None,
        typer.Option("--vars-file", help="JSON or YAML file with a mapping of variables."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Render a prompt version with variables into chat messages."""
    from llmops.errors import InputError

    found = workspace().prompts.get(ref, cache=False)
    values: dict[str, Any] = {}
    if vars_file is not None:
        from llmops._yamldoc import load_yaml

        try:
            text = vars_file.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"--vars-file {vars_file}: cannot read it: {exc}") from None
        loaded = load_yaml(text, what=f"--vars-file {vars_file}")
        if not isinstance(loaded, dict):
            raise InputError(f"--vars-file {vars_file}: expected a mapping of variable names")
        values.update(loaded)
    values.update(_coerce(found.spec, raw) for raw in var or [])
    rendered = found.render(**values)
    if json_out:
        body: dict[str, Any] = {"ref": found.ref, "messages": rendered.messages}
        if rendered.text is not None:
            body["text"] = rendered.text
        body["model"] = rendered.model.model_dump(mode="json", exclude_none=True)
        emit_json(body)
        return
    out = console()
    for message in rendered.messages:
        out.print(f"[bold]{message['role']}[/bold]")
        out.print(message["content"], markup=False)


@app.command()
def diff(
    a: Annotated[str, typer.Argument(help="Old version (NAME@N or NAME@LABEL).")],
    b: Annotated[str, typer.Argument(help="New version.")],
    exit_code: Annotated[
        bool, typer.Option("--exit-code", help="Exit 1 when the versions differ.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Show what changed between two versions: messages, variables, model parameters."""
    result = workspace().prompts.diff(a, b)
    if json_out:
        emit_json({**result.model_dump(mode="json"), "identical": result.identical})
    else:
        console().print(str(result), markup=False)
    if exit_code and not result.identical:
        raise typer.Exit(1)


@app.command()
def label(
    ref: Annotated[str, typer.Argument(help="The version to point at: NAME@N, NAME@LABEL, NAME.")],
    label_name: Annotated[str, typer.Argument(metavar="LABEL", help="Label, e.g. production.")],
    remove: Annotated[
        bool, typer.Option("--remove", help="Remove LABEL from the prompt instead.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Move a label (production, staging, ...) to a version, atomically and audited."""
    from llmops.refs import parse_ref

    prompts = workspace().prompts
    if remove:
        name = parse_ref(ref).name or ref
        move = prompts.unlabel(name, label_name)
    else:
        move = prompts.label(ref, label_name)
    if json_out:
        emit_json({**move.to_json(), "changed": move.changed})
        return
    if move.version is None:
        typer.echo(f"{move.name}: removed label {move.label} (was version {move.previous_version})")
    elif not move.changed:
        typer.echo(f"{move.name}: {move.label} already at version {move.version}")
    else:
        before = f" (was {move.previous_version})" if move.previous_version else ""
        typer.echo(f"{move.name}: {move.label} -> version {move.version}{before}")


@app.command()
def history(
    name: Annotated[str, typer.Argument(help="Prompt name.")],
    json_out: JsonOpt = False,
) -> None:
    """Show a prompt's history: versions created and label moves, oldest first."""
    entries = workspace().prompts.history(name)
    if json_out:
        emit_json([e.to_json() for e in entries])
        return
    rows = table("when", "who", "what", keep=("when",))
    for e in entries:
        if e.action == "create":
            what = f"created version {e.version}" + (f": {e.message}" if e.message else "")
        elif e.action == "label":
            was = f" (from {e.previous_version})" if e.previous_version else ""
            what = f"label {e.label} -> {e.version}{was}"
        elif e.action == "unlabel":
            what = f"removed label {e.label} (was {e.previous_version})"
        else:
            what = f"{e.action}d version {e.version}"
        rows.add_row(e.at.strftime("%Y-%m-%d %H:%M:%S"), e.actor, what)
    print_table(rows)


@app.command()
def archive(
    ref: Annotated[str, typer.Argument(help="NAME@N to archive.")],
    undo: Annotated[bool, typer.Option("--undo", help="Unarchive instead.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Archive a version: it stays readable as NAME@N but is no longer 'latest'."""
    info = workspace().prompts.archive(ref, archived=not undo)
    if json_out:
        emit_json(info.to_json())
    else:
        typer.echo(f"{info.name}@{info.version}: {'archived' if info.archived else 'active'}")


@app.command()
def pull(
    refs: Annotated[
        list[str] | None, typer.Argument(help="References to write (default: latest of each).")
    ] = None,
    directory: Annotated[
        Path | None,
        typer.Option("--dir", help="Target folder (default: the workspace's prompts/)."),
    ] = None,
    include_builtin: IncludeBuiltin = False,
    json_out: JsonOpt = False,
) -> None:
    """Write registry versions back to prompt files (atomic writes; unchanged files untouched)."""
    results = workspace().prompts.pull(
        refs or None, directory=directory, include_builtin=include_builtin
    )
    if json_out:
        emit_json([{**r.to_json(), "written": r.created} for r in results])
        return
    for r in results:
        state = "wrote" if r.created else "unchanged"
        typer.echo(f"{r.name}@{r.version}: {state} {r.path}")
