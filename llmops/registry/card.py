"""Model cards: the README.md a Hugging Face user expects next to a model's files.

Front matter (``base_model``, ``library_name``, ``tags``) as the Hub reads it, then the base
model (name, ``name@version`` and digest), the method and its hyperparameters, the dataset and
its fingerprint, the training run, eval results with their intervals, an intended-use section
for people to fill in, and the lineage. Adapters stored by ``llmops train`` carry one (instead of
peft's empty template); ``llmops models card REF`` writes it again with the eval runs so far.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["CardData", "model_card"]


@dataclass(slots=True, kw_only=True)
class CardData:
    """What a card says (every field optional but the name)."""

    name: str
    ref: str | None = None
    digest: str | None = None
    kind: str = "adapter"
    base_model: str | None = None
    """The base model's name, as ``base_model_name_or_path`` names it."""
    base_ref: str | None = None
    base_digest: str | None = None
    recipe: dict[str, Any] | None = None
    recipe_hash: str | None = None
    dataset: str | None = None
    dataset_fingerprint: str | None = None
    run_id: str | None = None
    final_loss: float | None = None
    evals: list[dict[str, Any]] = field(default_factory=list)
    """``{"run_id", "suite", "target", "pass_rate", "pass_rate_ci_low", ...}`` per result."""
    parents: list[str] = field(default_factory=list)
    aliases: list[str] = field(default_factory=list)


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f}" if isinstance(value, float) else str(value)


def model_card(data: CardData) -> str:
    """The card's Markdown text."""
    recipe = data.recipe or {}
    method = str(recipe.get("method", "lora"))
    trainer = str(recipe.get("trainer", "sft"))
    front: dict[str, Any] = {"library_name": "peft" if data.kind == "adapter" else "transformers"}
    if data.base_model:
        front["base_model"] = data.base_model
    front["tags"] = ["llmops", *([method, trainer] if recipe else [])]
    lines = ["---", yaml.safe_dump(front, sort_keys=False).strip(), "---", "", f"# {data.name}", ""]
    kind = {"adapter": "A LoRA-family adapter", "merged-model": "A merged model"}.get(
        data.kind, "A model"
    )
    lines.append(
        f"{kind} stored by llmops" + (f" as `{data.ref}` (`{data.digest}`)." if data.ref else ".")
    )
    lines += ["", "## Base model", ""]
    if data.base_model:
        lines.append(
            f"`{data.base_model}`"
            + (f" (`{data.base_ref}`, `{data.base_digest}`)" if data.base_ref else "")
            + ". Load it under that name (or pull it with"
            f" `llmops artifacts pull {data.base_ref or data.base_model}`), then the adapter"
            " with `PeftModel.from_pretrained`."
        )
    else:
        lines.append("Not recorded.")
    if recipe:
        lora, training = recipe.get("lora") or {}, recipe.get("training") or {}
        lines += [
            "", "## Training", "",
            f"- Method: {method} with the {trainer.upper()} trainer (trl + peft)",
            f"- LoRA: r={lora.get('r')}, alpha={lora.get('alpha')}, dropout={lora.get('dropout')},"
            f" target modules {lora.get('target_modules')}",
            f"- Steps: {training.get('max_steps')}"
            + (f" ({training['num_epochs']} epochs)" if training.get("num_epochs") else "")
            + f", learning rate {training.get('learning_rate')}, batch size"
            f" {training.get('batch_size')}, max length {training.get('max_length')},"
            f" seed {training.get('seed')}",
        ]  # fmt: skip
        if data.recipe_hash:
            lines.append(f"- Recipe: `{data.recipe_hash}`")
        if data.run_id:
            loss = f", final loss {data.final_loss:.4f}" if data.final_loss is not None else ""
            lines.append(f"- Run: `{data.run_id}`{loss} (`llmops runs show {data.run_id}`)")
    lines += ["", "## Data", ""]
    lines.append(
        f"`{data.dataset or 'not recorded'}`"
        + (f", fingerprint `{data.dataset_fingerprint}`" if data.dataset_fingerprint else "")
    )
    lines += ["", "## Evaluation", ""]
    if data.evals:
        lines += ["| eval run | suite | target | pass rate [95% CI] | mean score [95% CI] |",
                  "|---|---|---|---|---|"]  # fmt: skip
        for e in data.evals:
            lines.append(
                f"| `{e.get('run_id')}` | {e.get('suite')} | {e.get('target')} |"
                f" {_fmt(e.get('pass_rate'))} [{_fmt(e.get('pass_rate_ci_low'))},"
                f" {_fmt(e.get('pass_rate_ci_high'))}] | {_fmt(e.get('mean_score'))}"
                f" [{_fmt(e.get('ci_low'))}, {_fmt(e.get('ci_high'))}] |"
            )
    else:
        lines.append("No eval run has tested this version yet (`llmops models card` adds them).")
    lines += ["", "## Intended use", "", "_To be written by the model's owners: what it is for,"
              " what it must not be used for, known limitations._", ""]  # fmt: skip
    lines += ["## Lineage", ""]
    lines += [f"- made from `{p}`" for p in data.parents] or ["- no recorded parents"]
    if data.aliases:
        lines.append(f"- aliases: {', '.join(f'`{a}`' for a in data.aliases)}")
    return "\n".join(lines) + "\n"
