"""``llmops data validate``: the data gate from the terminal."""

from __future__ import annotations

from typing import Annotated

import typer

from llmops.cli._common import JsonOpt, console, emit_json

app = typer.Typer(help="Datasets: check them before training.", no_args_is_help=True)


@app.command("validate")
def validate(
    path: Annotated[str, typer.Argument(help="JSONL, CSV or Parquet file.")],
    fmt: Annotated[
        str, typer.Option("--format", help="chat, prompt-completion or preference.")
    ] = "chat",
    tokenizer: Annotated[
        str | None,
        typer.Option("--tokenizer", help="A model folder: checks the chat template and lengths."),
    ] = None,
    max_length: Annotated[
        int | None, typer.Option("--max-length", help="Token limit; longer rows are reported.")
    ] = None,
    eval_path: Annotated[
        str | None, typer.Option("--eval", help="Eval file, checked for overlap with training.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Run the data gate: schema, roles, empty turns, template, lengths, duplicates, overlap,
    UTF-8. Exit 1 when a check fails its threshold."""
    from llmops.data import validate_dataset

    tok = None
    if tokenizer:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(tokenizer)
    report = validate_dataset(path, fmt, tokenizer=tok, max_length=max_length, eval_path=eval_path)
    if json_out:
        emit_json(report.to_json())
    else:
        out = console()
        verdict = "passed" if report.ok else "FAILED"
        out.print(f"{path}: {report.rows} rows, gate {verdict}  ({report.fingerprint[:19]})")
        for f in report.findings:
            rows = ", ".join(str(r) for r in f.rows[:10]) + (" ..." if f.count > 10 else "")
            level = "error" if f.fails else "warn "
            out.print(f"  {level} {f.check:<22} {f.count:>6} rows ({rows}): {f.message}")
    if not report.ok:
        raise typer.Exit(1)
