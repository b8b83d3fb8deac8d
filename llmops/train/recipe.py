"""Recipes: one YAML file says what a fine-tuning run does, validated before anything runs.

A recipe names the base model, the method (``lora``, ``qlora``, ``dora``), the trainer (``sft``,
``dpo``), the dataset and its format, hyperparameters, the seed and the output adapter's name.
Every field has its default here, in the models; unknown keys are refused with a suggestion, and
all problems of a file are reported at once with their lines. ``--set dotted.key=value``
overrides apply before validation, so they are checked the same way.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Annotated, Any, Literal

import blake3
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from llmops._version import __version__
from llmops._yamldoc import (
    Problem,
    YamlSyntaxError,
    node_at,
    parse_yaml,
    problems,
    read_document,
    summarize,
)
from llmops.data.gate import GateThresholds
from llmops.errors import RecipeError

__all__ = [
    "FORMAT_VERSION",
    "DatasetSpec",
    "DpoSpec",
    "LoraSpec",
    "OutputSpec",
    "QuantizationSpec",
    "Recipe",
    "TrainingSpec",
    "load_recipe",
    "parse_overrides",
]

FORMAT_VERSION = 1
MAX_RECIPE_BYTES = 1_000_000


class _Spec(BaseModel):
    # inf and nan pass `gt=0`-style bounds and train to NaN: refuse them everywhere.
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class DatasetSpec(_Spec):
    """``dataset:``: where the rows come from and their shape."""

    path: str | None = None
    """JSONL, CSV or Parquet file, relative to the workspace root."""
    artifact: str | None = None
    """A ``dataset`` artifact reference instead of ``path`` (its one data file is used)."""
    format: Literal["chat", "prompt-completion", "preference"] = "chat"
    """``chat`` (messages), ``prompt-completion``, or ``preference`` (prompt/chosen/rejected)."""
    eval_path: str | None = None
    """A separate eval file; else ``eval_fraction`` of the rows is split off (seeded)."""
    eval_fraction: float = Field(default=0.0, ge=0, lt=1)
    """Share of rows held out for evaluation when there is no ``eval_path``."""

    @model_validator(mode="after")
    def _one_source(self) -> DatasetSpec:
        if (self.path is None) == (self.artifact is None):
            raise ValueError("give exactly one of 'path' or 'artifact'")
        return self


class LoraSpec(_Spec):
    """``lora:``: the adapter (also for QLoRA and DoRA)."""

    r: int = Field(default=8, ge=1, le=1024)
    """Rank of the update matrices."""
    alpha: float = Field(default=16, gt=0)
    """Scaling numerator: updates are scaled by ``alpha / r``."""
    dropout: float = Field(default=0.05, ge=0, lt=1)
    """Dropout on the adapter's input."""
    target_modules: Literal["all-linear"] | Annotated[list[str], Field(min_length=1)] = "all-linear"
    """Module names to adapt (``q_proj`` ...), or ``all-linear``."""


class QuantizationSpec(_Spec):
    """``quantization:``: how QLoRA loads the frozen base (bitsandbytes 4-bit)."""

    quant_type: Literal["nf4", "fp4"] = "nf4"
    double_quant: bool = True
    """Quantize the quantization constants too (saves ~0.4 bit per weight)."""
    compute_dtype: Literal["float32", "bfloat16", "float16"] = "float32"
    """dtype of the matmuls; bfloat16 on GPUs that have it."""


class TrainingSpec(_Spec):
    """``training:``: hyperparameters and schedule."""

    max_steps: int = Field(default=100, ge=1)
    """Optimizer steps to run (computed from ``num_epochs`` when that is given)."""
    num_epochs: float | None = Field(default=None, gt=0, le=10_000)
    """Passes over the training rows instead of ``max_steps``: the steps are computed from the
    rows the data gate counted (as the trainer counts them) and recorded with the run."""
    seed: int = Field(default=42, ge=0, le=2**32 - 1, strict=True)
    """Seed for initialisation, data order and dropout (0 to 2**32 - 1, as numpy takes)."""
    learning_rate: float = Field(default=2e-4, gt=0, le=1)
    batch_size: int = Field(default=4, ge=1)
    """Rows per device per step (before gradient accumulation)."""
    gradient_accumulation_steps: int = Field(default=1, ge=1)
    max_length: int = Field(default=512, ge=8)
    """Token limit per row; longer rows are truncated (the data gate counts them)."""
    lr_scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_steps: int = Field(default=0, ge=0)
    weight_decay: float = Field(default=0.0, ge=0)
    max_grad_norm: float = Field(default=1.0, gt=0)
    logging_steps: int = Field(default=1, ge=1)
    save_steps: int = Field(default=50, ge=1)
    """Checkpoint every this many steps (a killed run resumes from the last one)."""
    save_total_limit: int = Field(default=2, ge=2)
    """Checkpoints kept; at least 2, so one stays intact while the next is written."""
    eval_steps: int | None = Field(default=None, ge=1)
    """Evaluate on the eval split every this many steps (default: at ``save_steps``)."""
    gradient_checkpointing: bool = False
    precision: Literal["fp32", "bf16", "fp16"] = "fp32"
    """Mixed precision of training (bf16/fp16 need a GPU that supports them)."""
    report_to: list[Literal["tensorboard", "mlflow", "wandb"]] = Field(default_factory=list)
    """Experiment trackers that also get the trainer's logs (off by default; the run record
    stays the source of truth). Each needs its package: ``llmops[tensorboard]``, mlflow, wandb."""

    @field_validator("num_epochs", mode="before")
    @classmethod
    def _not_a_bool(cls, value: Any) -> Any:
        if isinstance(value, bool):
            raise ValueError("must be a number of epochs, not true/false")
        return value

    @field_validator("report_to", mode="before")
    @classmethod
    def _one_tracker(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value

    def steps_for(self, train_rows: int, *, world: int = 1) -> int:
        """``max_steps``, or the optimizer steps of ``num_epochs`` over ``train_rows`` (per
        process ``ceil(rows / (batch_size * world))`` batches, one step per accumulation)."""
        if self.num_epochs is None:
            return self.max_steps
        batches = math.ceil(train_rows / (self.batch_size * world))
        return max(
            1, math.ceil(self.num_epochs * max(batches // self.gradient_accumulation_steps, 1))
        )


class DpoSpec(_Spec):
    """``dpo:``: preference optimisation settings (trainer ``dpo`` only)."""

    beta: float = Field(default=0.1, gt=0)
    """Strength of the pull towards the reference model."""
    loss_type: Literal["sigmoid", "ipo", "hinge"] = "sigmoid"


class OutputSpec(_Spec):
    """``output:``: where the result goes."""

    name: str
    """Adapter artifact name; each run adds a new version, never overwrites one."""
    merged: bool = False
    """Also store the adapter merged into the full-precision base as a ``merged-model``."""
    merged_name: str | None = None
    """Name of that artifact (default: ``<name>-merged``)."""

    @field_validator("name", "merged_name")
    @classmethod
    def _artifact_name(cls, value: str | None) -> str | None:
        from llmops.errors import InvalidNameError
        from llmops.refs import check_name

        if value is not None:
            try:
                check_name(value, what="artifact name")
            except InvalidNameError as exc:
                raise ValueError(exc.message) from None
        return value


class Recipe(_Spec):
    """A fine-tuning recipe: the whole run as plain data."""

    base_model: str
    """An artifact reference (``smollm2-135m-instruct@production``) or a local HF folder."""
    method: Literal["lora", "qlora", "dora"] = "lora"
    trainer: Literal["sft", "dpo"] = "sft"
    dataset: DatasetSpec
    chat_template: str | None = None
    """A Jinja chat template replacing the tokenizer's (stored with the adapter)."""
    lora: LoraSpec = Field(default_factory=LoraSpec)
    quantization: QuantizationSpec = Field(default_factory=QuantizationSpec)
    training: TrainingSpec = Field(default_factory=TrainingSpec)
    dpo: DpoSpec = Field(default_factory=DpoSpec)
    output: OutputSpec
    gate: GateThresholds = Field(default_factory=GateThresholds)
    """Data gate thresholds (fraction of rows each check may flag)."""

    @model_validator(mode="after")
    def _trainer_fits_format(self) -> Recipe:
        fmt = self.dataset.format
        if self.trainer == "dpo" and fmt != "preference":
            raise ValueError(f"trainer 'dpo' needs dataset.format 'preference', got {fmt!r}")
        if self.trainer == "sft" and fmt == "preference":
            raise ValueError(
                "trainer 'sft' takes 'chat' or 'prompt-completion' data, not 'preference'"
            )
        if self.training.eval_steps and not (self.dataset.eval_path or self.dataset.eval_fraction):
            raise ValueError("training.eval_steps needs dataset.eval_path or dataset.eval_fraction")
        return self

    @property
    def merged_name(self) -> str:
        """Artifact name of the merged export."""
        return self.output.merged_name or f"{self.output.name}-merged"

    def resolved(self) -> dict[str, Any]:
        """Every field with its value (defaults included): what the run records."""
        return {"format_version": FORMAT_VERSION, **self.model_dump(mode="json", by_alias=True)}

    def digest(self) -> str:
        """``blake3:`` of the resolved recipe's canonical JSON (the llmops version excluded)."""
        canonical = json.dumps(self.resolved(), sort_keys=True, separators=(",", ":"))
        return f"blake3:{blake3.blake3(canonical.encode()).hexdigest()}"


def parse_overrides(items: list[str], *, option: str = "--set") -> dict[str, Any]:
    """``["training.max_steps=200", ...]`` to ``{"training.max_steps": 200}`` (YAML values);
    ``option`` names the command-line option in errors.

    Raises:
        RecipeError: An item has no ``=`` or an empty key.
    """
    out: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key or any(not part for part in key.split(".")):
            raise RecipeError(
                f"{item!r} is not key=value",
                path=option,
                hint=f"write e.g. {option} training.max_steps=200",
            )
        try:
            out[key] = parse_yaml(raw)[0] if raw.strip() else ""
        except YamlSyntaxError:
            out[key] = raw
    return out


def _apply(data: dict[str, Any], key: str, value: Any) -> None:
    parts = key.split(".")
    node = data
    for part in parts[:-1]:
        child = node.get(part)
        if not isinstance(child, dict):
            child = {}
            node[part] = child
        node = child
    if value is None:  # --set key=null: back to the schema's default (or unset)
        node.pop(parts[-1], None)
    else:
        node[parts[-1]] = value


def load_recipe(
    source: str | os.PathLike[str], *, overrides: dict[str, Any] | None = None
) -> Recipe:
    """Read, override and validate a recipe file.

    Raises:
        RecipeError: The file is missing, not YAML, or invalid; every problem is listed, the first
            with its line and column.
    """
    path = Path(source)
    text = read_document(
        path, RecipeError, max_bytes=MAX_RECIPE_BYTES, what="recipe file",
        too_big_hint="a recipe is a short YAML file",
    )  # fmt: skip
    return parse_recipe(text, path=str(path), overrides=overrides)


def parse_recipe(
    text: str, *, path: str = "<recipe>", overrides: dict[str, Any] | None = None
) -> Recipe:
    """Validate recipe YAML text (see :func:`load_recipe`)."""
    try:
        data, root = parse_yaml(text)
    except YamlSyntaxError as exc:
        p = exc.problem
        raise RecipeError(p.message, path=path, line=p.line, column=p.column) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise RecipeError(
            f"expected a mapping of recipe fields, got {type(data).__name__}", path=path, line=1
        )
    version = data.pop("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise RecipeError(
            f"format_version {version!r} is not supported (llmops {__version__} reads "
            f"{FORMAT_VERSION})",
            path=path,
        )
    overridden = dict(overrides or {})
    for key, value in overridden.items():
        _apply(data, key, value)
    training = data.get("training")
    if isinstance(training, dict) and {"max_steps", "num_epochs"} <= training.keys():
        node = node_at(root, ("training", "num_epochs"), key=True)
        raise RecipeError(
            "training gives both max_steps and num_epochs",
            path=path,
            line=node.start_mark.line + 1 if node is not None else None,
            hint="keep one: num_epochs computes max_steps from the number of training rows",
        )
    try:
        return Recipe.model_validate(data)
    except ValidationError as exc:
        found = problems(exc, root, Recipe, top_level_extra=("format_version",))
        found = [_from_override(p, overridden) for p in found]
        first, message = summarize(found)
        raise RecipeError(message, path=path, line=first.line, column=first.column) from None


def _from_override(problem: Problem, overrides: dict[str, Any]) -> Problem:
    for key in overrides:
        if f"'{key}'" in problem.message or problem.message.startswith(f"{key}:"):
            return Problem(None, None, f"{problem.message} (from --set {key})")
    return problem
