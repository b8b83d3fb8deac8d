"""``llmops artifacts ...``: push, pull and inspect model artifacts."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path
from typing import Annotated

import typer

from llmops.cli._common import (
    JsonOpt,
    console,
    emit_json,
    print_table,
    steps,
    table,
    workspace,
)
from llmops.errors import InputError

app = typer.Typer(
    help="Content-addressed artifacts: models, adapters, checkpoints, datasets.",
    no_args_is_help=True,
)

KindOpt = Annotated[
    str,
    typer.Option(
        "--kind",
        help="base-model, adapter, checkpoint, merged-model, dataset, eval-log or other.",
    ),
]


@contextmanager
def _progress(
    label: str, total: Callable[[], int | None], enabled: bool
) -> Iterator[Callable[[int], None]]:
    """A bytes-per-second progress bar on stderr (not in --json mode, not when stderr is not a
    terminal: logs and pipes get the one-line summary only)."""
    import sys

    if not enabled or not sys.stderr.isatty():
        yield lambda _n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task(label, total=total())  # sized only when a bar is shown
        yield lambda n: bar.advance(task, n)


def _size_of(path: Path) -> int | None:
    if not path.exists():
        return None
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file() and not p.is_symlink())


@app.command()
def push(
    path: Annotated[Path, typer.Argument(help="File or folder to store.")],
    name: Annotated[str, typer.Option("--name", help="Artifact name.")],
    kind: KindOpt = "other",
    parent: Annotated[
        list[str] | None,
        typer.Option("--parent", help="Lineage: a version this one was made from (repeat)."),
    ] = None,
    message: Annotated[str, typer.Option("--message", "-m", help="What changed.")] = "",
    allow_pickle: Annotated[
        bool,
        typer.Option("--allow-pickle", help="Accept pickle weights (.bin/.pt/...): trusted only."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Store a file or folder as a new immutable version; only new bytes are written."""
    store = workspace().artifacts
    with _progress(f"push {name}", lambda: _size_of(path), not json_out) as tick:
        result = store.push(
            path,
            name=name,
            kind=kind,  # type: ignore[arg-type]  # checked by push()
            parents=parent or [],
            message=message,
            allow_pickle=allow_pickle,
            progress=tick,
        )
    if json_out:
        emit_json(result.to_json())
        return
    v, s = result.version, result.stats
    rate = s.bytes_total / result.seconds / 1e6 if result.seconds else 0.0
    state = "new version" if result.created else "unchanged, already"
    console().print(
        f"{v.name}: {state} {v.version}  {v.digest[:19]}  {s.bytes_total / 1e6:.1f} MB,"
        f" {s.bytes_new / 1e6:.1f} MB new, {result.seconds:.1f}s ({rate:.0f} MB/s)"
    )


@app.command()
def pull(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION, NAME@ALIAS or a digest.")],
    dest: Annotated[Path, typer.Argument(help="Folder to write the files into.")],
    json_out: JsonOpt = False,
) -> None:
    """Write a version's files under DEST (loadable with from_pretrained(DEST))."""
    store = workspace().artifacts
    version = store.get(ref)
    with _progress(f"pull {version.ref}", lambda: version.bytes_total, not json_out) as tick:
        files = store.pull(version.ref, dest, progress=tick)
    if json_out:
        emit_json({**version.to_json(), "dest": str(dest), "files": [str(f) for f in files]})
        return
    typer.echo(f"{version.ref}: wrote {len(files)} file(s) under {dest}")


@app.command("list")
@app.command("ls")
def ls_(
    name: Annotated[str | None, typer.Argument(help="Only this artifact.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """List artifact versions."""
    versions = workspace().artifacts.ls(name)
    if json_out:
        emit_json([v.to_json() for v in versions])
        return
    rows = table(
        "artifact", "kind", "size", "aliases", "digest", "created", "parents",
        keep=("artifact", "digest"),
    )  # fmt: skip
    for v in versions:
        rows.add_row(
            v.ref,
            v.kind,
            f"{v.bytes_total / 1e6:.1f} MB",
            ", ".join(v.aliases),
            v.digest[7:19],
            v.created_at.strftime("%Y-%m-%d %H:%M"),
            ", ".join(v.parents),
        )
    print_table(rows)


@app.command()
def show(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION, NAME@ALIAS or a digest.")],
    json_out: JsonOpt = False,
) -> None:
    """Show a version: metadata, lineage and files (with tensor counts)."""
    store = workspace().artifacts
    version = store.get(ref)
    manifest = store.manifest(version)
    files = [
        {"path": f.path, "size": f.size, "digest": f.digest, "chunks": len(f.chunks),
         "tensors": len(f.tensors) if f.tensors is not None else None}
        for f in manifest.files
    ]  # fmt: skip
    if json_out:
        emit_json({**version.to_json(), "files": files})
        return
    out = console()
    out.print(f"[bold]{version.ref}[/bold]  {version.kind}  {version.digest}")
    out.print(
        f"aliases: {', '.join(version.aliases) or 'none'}   parents: "
        f"{', '.join(version.parents) or 'none'}   by {version.created_by}"
    )
    for f in files:
        tensors = f" {f['tensors']} tensors" if f["tensors"] is not None else ""
        out.print(
            f"  {f['path']}  {f['size']:,} bytes  {f['chunks']} chunks{tensors}", markup=False
        )


@app.command()
def verify(
    ref: Annotated[str | None, typer.Argument(help="One version (default: every version).")] = None,
    repair: Annotated[
        Path | None,
        typer.Option(
            "--repair", help="A file or folder with the intact data: store bad chunks again."
        ),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Re-read and re-hash stored chunks; exit 1 when any is missing or corrupt.

    Corrupt chunks are dropped from the index, so pushing the intact source again (or
    `--repair SOURCE`) stores them anew.
    """
    report = workspace().artifacts.verify(ref, repair=repair)
    if json_out:
        emit_json(report.to_json())
    else:
        for problem in report.problems:
            typer.echo(f"problem: {problem['problem']}", err=True)
        if report.repaired:
            typer.echo(f"repaired {report.repaired} chunk(s) from {repair}")
        if report.quarantined and not report.ok:
            typer.echo(
                f"{report.quarantined} corrupt chunk(s) dropped from the index: push the intact"
                " source again, or run `llmops artifacts verify --repair SOURCE`",
                err=True,
            )
        state = "ok" if report.ok else f"{len(report.problems)} problem(s)"
        typer.echo(
            f"{state}: checked {report.chunks_checked} chunks, {report.bytes_checked / 1e6:.1f} MB"
        )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def gc(
    grace_hours: Annotated[
        float, typer.Option("--grace-hours", help="Spare data used within this many hours.")
    ] = 1.0,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Delete stored data that no version refers to (never data a push in flight may use)."""
    import math

    if not math.isfinite(grace_hours) or not 0 <= grace_hours <= 1e6:
        raise InputError(
            f"--grace-hours must be a number of hours from 0 to 1000000, got {grace_hours}",
            hint="e.g. --grace-hours 1 (the default) or 0 to collect everything unreferenced",
        )
    report = workspace().artifacts.gc(grace=timedelta(hours=grace_hours), dry_run=dry_run)
    if json_out:
        emit_json(report.to_json())
        return
    verb = "would free" if dry_run else "freed"
    typer.echo(
        f"{verb} {report.bytes_freed / 1e6:.1f} MB: {report.packs_deleted} pack(s),"
        f" {report.orphans_deleted} orphan object(s), {report.manifests_deleted} manifest(s)"
    )


@app.command()
def alias(
    ref: Annotated[str, typer.Argument(help="The version: NAME@VERSION.")],
    alias_name: Annotated[str, typer.Argument(metavar="ALIAS", help="e.g. production.")],
    json_out: JsonOpt = False,
) -> None:
    """Point an alias at a version (audited)."""
    version = workspace().artifacts.alias(ref, alias_name)
    if json_out:
        emit_json(version.to_json())
        return
    typer.echo(f"{version.name}: {alias_name} -> version {version.version}")


@app.command("import")
def import_(
    source: Annotated[Path, typer.Argument(help="A Hugging Face model folder or a .gguf file.")],
    name: Annotated[str, typer.Option("--name", help="Artifact name.")],
    kind: KindOpt = "base-model",
    json_out: JsonOpt = False,
) -> None:
    """Import a base model: a local Hugging Face folder, or a GGUF file dequantized to
    safetensors (needs the `train` extra)."""
    from llmops.artifacts.models import import_model

    store = workspace().artifacts
    with steps(enabled=not json_out) as step:
        result = import_model(store, source, name=name, kind=kind, step=step)  # type: ignore[arg-type]
    if json_out:
        emit_json(result.to_json())
        return
    v = result.version
    typer.echo(f"{v.ref}: imported {v.file_count} file(s), {v.bytes_total / 1e6:.1f} MB")
