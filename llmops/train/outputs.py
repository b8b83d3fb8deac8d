"""What a run stores: the adapter (config, safetensors weights, tokenizer, chat template; never
pickle, never non-finite weights, config written canonically) and the optional merged model,
as artifact versions with lineage; and what a resumed run finds it stored already."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.db.timestamps import utcnow
from llmops.errors import ArtifactNotFoundError, TrainingError
from llmops.train.recipe import Recipe
from llmops.train.runs import RunRecord
from llmops.train.stage import Inputs, Stage

if TYPE_CHECKING:
    from llmops.artifacts import ArtifactVersion

__all__ = ["check_finite", "finish_stored", "save_outputs", "stored_output"]


def check_finite(model: Any, run_id: str) -> None:
    """Refuse to store an adapter holding NaN or infinite weights."""
    import torch

    for name, param in model.named_parameters():
        if param.requires_grad and not bool(torch.isfinite(param.detach()).all()):
            raise TrainingError(
                f"run {run_id}: adapter weight {name} is not finite (NaN or inf); nothing was"
                " stored",
                hint="lower training.learning_rate or lora.alpha, or check the data",
            )


def stored_output(
    ws: Stage, spec: Recipe, run_id: str
) -> tuple[ArtifactVersion, ArtifactVersion | None] | None:
    """The adapter (and merged model, if the recipe wants one) this run already stored."""

    def find(name: str) -> ArtifactVersion | None:
        try:
            versions = ws.artifacts.ls(name)
        except ArtifactNotFoundError:
            return None
        mine = [v for v in versions if v.meta.get("run_id") == run_id]
        return mine[-1] if mine else None

    adapter = find(spec.output.name)
    if adapter is None:
        return None
    return adapter, find(spec.merged_name) if spec.output.merged else None


def finish_stored(
    ws: Stage,
    spec: Recipe,
    inputs: Inputs,
    run_id: str,
    run_dir: Path,
    stored: tuple[ArtifactVersion, ArtifactVersion | None],
) -> tuple[RunRecord, ArtifactVersion, ArtifactVersion | None]:
    """Complete a run whose adapter is stored (merging it first if that was cut short)."""
    adapter, merged = stored
    if spec.output.merged and merged is None:
        adapter_dir = ws.models.artifact_dir(adapter)
        merged = merge_adapter(
            ws, spec, inputs, adapter_dir, run_dir / "merged", adapter, adapter.meta
        )
    run = ws.runs._update(
        run_id, event="run.complete", status="completed", ended_at=utcnow(),
        final_loss=last_loss(ws, run_id), adapter_ref=adapter.ref,
        merged_ref=merged.ref if merged else None,
    )  # fmt: skip
    return run, adapter, merged


def last_loss(ws: Stage, run_id: str) -> float | None:
    losses = [m["loss"] for m in ws.runs.metrics(run_id) if m.get("loss") is not None]
    return float(losses[-1]) if losses else None


def _canonical_adapter_config(adapter_dir: Path, base_model: str) -> None:
    """Rewrite ``adapter_config.json`` with sorted keys and sorted name lists (peft writes
    ``target_modules`` from a set, whose order changes from process to process, so the same
    training would otherwise store a different digest), naming the base model portably: by
    its name in the registry, never the trainer's local cache path, which exists on no other
    machine."""
    import json

    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    config["base_model_name_or_path"] = base_model
    for key in (
        "target_modules",
        "modules_to_save",
        "exclude_modules",
        "layers_to_transform",
    ):
        value = config.get(key)
        if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
            config[key] = sorted(value, key=str)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _write_card(
    adapter_dir: Path, spec: Recipe, inputs: Inputs, meta: dict[str, Any], base_name: str
) -> None:
    """The model card (README.md) instead of peft's empty template."""
    from llmops.registry.card import CardData, model_card

    card = CardData(
        name=spec.output.name, kind="adapter", base_model=base_name, base_ref=inputs.base_ref,
        base_digest=inputs.base_digest, recipe=spec.resolved(), recipe_hash=spec.digest(),
        dataset=inputs.dataset_ref, dataset_fingerprint=meta.get("dataset_fingerprint"),
        run_id=meta.get("run_id"),
        parents=[r for r in (inputs.base_ref, inputs.dataset_ref) if r],
    )  # fmt: skip
    (adapter_dir / "README.md").write_text(model_card(card), encoding="utf-8")


def save_outputs(
    ws: Stage,
    spec: Recipe,
    inputs: Inputs,
    model: Any,
    tokenizer: Any,
    run_dir: Path,
    meta: dict[str, Any],
) -> tuple[ArtifactVersion, ArtifactVersion | None]:
    """Store the adapter (weights, config, tokenizer, chat template) with its lineage."""
    adapter_dir = run_dir / "adapter"
    shutil.rmtree(adapter_dir, ignore_errors=True)
    model.save_pretrained(adapter_dir)
    tokenizer.save_pretrained(adapter_dir)
    base_name = inputs.base_ref.partition("@")[0] if inputs.base_ref else spec.base_model
    _canonical_adapter_config(adapter_dir, base_name)
    _write_card(adapter_dir, spec, inputs, meta, base_name)
    lineage = [r for r in (inputs.base_ref, inputs.dataset_ref) if r]
    adapter = ws.artifacts.push(
        adapter_dir, name=spec.output.name, kind="adapter", parents=lineage, meta=meta,
        message=f"trained by {meta['run_id']}",
    ).version  # fmt: skip
    merged = None
    if spec.output.merged:
        merged = merge_adapter(ws, spec, inputs, adapter_dir, run_dir / "merged", adapter, meta)
    return adapter, merged


def merge_adapter(
    ws: Stage,
    spec: Recipe,
    inputs: Inputs,
    adapter_dir: Path,
    out: Path,
    adapter: ArtifactVersion,
    meta: dict[str, Any],
) -> ArtifactVersion:
    """Merge the adapter into the full-precision base (never into 4-bit weights) and store it."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = AutoModelForCausalLM.from_pretrained(inputs.base_dir, dtype=torch.float32)
    merged = PeftModel.from_pretrained(base, adapter_dir).merge_and_unload()
    shutil.rmtree(out, ignore_errors=True)
    merged.save_pretrained(out)
    AutoTokenizer.from_pretrained(adapter_dir).save_pretrained(out)
    parents = [adapter.ref, *([inputs.base_ref] if inputs.base_ref else [])]
    return ws.artifacts.push(
        out, name=spec.merged_name, kind="merged-model", parents=parents,
        meta={**meta, "merged_from": adapter.ref}, message=f"{adapter.ref} merged into its base",
    ).version  # fmt: skip


# -- finish ---------------------------------------------------------------------------------
