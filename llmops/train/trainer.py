"""Building the trl trainer for a recipe: the model (4-bit for QLoRA), the LoRA/DoRA config,
the datasets, and the trainer arguments, which are derived from the recipe's ``training``
fields (one place for defaults: the recipe schema)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from llmops.data.formats import FORMATS, Row
from llmops.data.gate import load_split, split_indices
from llmops.train.recipe import Recipe, TrainingSpec
from llmops.train.stage import Inputs, Stage

__all__ = ["build_trainer", "fit", "trainer_arguments"]

_RENAMED: dict[str, tuple[str, ...]] = {
    "batch_size": ("per_device_train_batch_size", "per_device_eval_batch_size"),
    "lr_scheduler": ("lr_scheduler_type",),
    "gradient_checkpointing": ("activation_checkpointing",),
}
"""Recipe ``training`` fields whose trainer argument has another name."""
_SPECIAL = frozenset({"precision", "eval_steps", "num_epochs", "report_to"})
"""Recipe fields that map to trainer arguments by a rule (see :func:`trainer_arguments`)."""


def trainer_arguments(
    t: TrainingSpec, *, output_dir: Path, device: str, has_eval: bool
) -> dict[str, Any]:
    """trl/transformers trainer arguments for the recipe's ``training`` section: every field
    under its own name (or the renamed one above), plus the rules for precision and eval."""
    args: dict[str, Any] = {}
    for name in type(t).model_fields:
        if name in _SPECIAL:
            continue
        for target in _RENAMED.get(name, (name,)):
            args[target] = getattr(t, name)
    args.update(
        output_dir=str(output_dir),
        data_seed=t.seed,
        bf16=t.precision == "bf16",
        fp16=t.precision == "fp16",
        use_cpu=device == "cpu",
        report_to=list(t.report_to),
        disable_tqdm=True,
        dataloader_num_workers=0,
        eval_strategy="steps" if has_eval else "no",
        eval_steps=(t.eval_steps or t.save_steps) if has_eval else None,
    )
    return args


def _rows(rows: list[Row], fmt: str) -> Any:
    from datasets import Dataset

    fields = FORMATS[fmt]
    return Dataset.from_list([{f: r.data[f] for f in fields} for r in rows])


def build_trainer(
    ws: Stage | None,
    spec: Recipe,
    inputs: Inputs,
    tokenizer: Any,
    run_id: str,
    run_dir: Path,
    *,
    device: str,
    live: bool,
) -> tuple[Any, Any]:
    import torch
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    from llmops.train.callbacks import QLoRAGuard, TrackingCallback

    t = spec.training
    rows = load_split(inputs.data_path, spec.dataset.format)
    if inputs.eval_path is not None:
        train_rows, eval_rows = rows, load_split(inputs.eval_path, spec.dataset.format)
    else:
        train_idx, eval_idx = split_indices(len(rows), spec.dataset.eval_fraction, t.seed)
        train_rows, eval_rows = [rows[i] for i in train_idx], [rows[i] for i in eval_idx]
    load: dict[str, Any] = {"dtype": torch.float32}
    if spec.method == "qlora":
        from llmops.train.qlora import quantization_config

        q = spec.quantization
        load["quantization_config"] = quantization_config(
            quant_type=q.quant_type, double_quant=q.double_quant, compute_dtype=q.compute_dtype
        )
        load["device_map"] = {"": device}
    torch.manual_seed(t.seed)
    model = AutoModelForCausalLM.from_pretrained(inputs.base_dir, **load)
    if spec.method == "qlora":
        from peft import prepare_model_for_kbit_training

        from llmops.train.qlora import keep_trainable_layout

        keep_trainable_layout(model)  # before anything can run an inference forward

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=t.gradient_checkpointing
        )
    peft_config = LoraConfig(
        r=spec.lora.r, lora_alpha=spec.lora.alpha, lora_dropout=spec.lora.dropout,
        target_modules=spec.lora.target_modules, use_dora=spec.method == "dora",
        task_type="CAUSAL_LM",
    )  # fmt: skip
    has_eval = bool(eval_rows)
    common = trainer_arguments(
        t, output_dir=run_dir / "checkpoints", device=device, has_eval=has_eval
    )
    tracking = TrackingCallback(
        ws.runs if ws is not None else None, run_id, max_steps=t.max_steps, live=live
    )
    callbacks: list[Any] = [tracking]
    if spec.method == "qlora":
        callbacks.append(QLoRAGuard())
    datasets = {
        "train_dataset": _rows(train_rows, spec.dataset.format),
        "eval_dataset": _rows(eval_rows, spec.dataset.format) if has_eval else None,
    }
    if spec.trainer == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, beta=spec.dpo.beta, loss_type=[spec.dpo.loss_type])
        trainer = DPOTrainer(
            model=model, args=args, processing_class=tokenizer, peft_config=peft_config,
            callbacks=callbacks, **datasets,
        )  # fmt: skip
    else:
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common)
        trainer = SFTTrainer(
            model=model, args=args, processing_class=tokenizer, peft_config=peft_config,
            callbacks=callbacks, **datasets,
        )  # fmt: skip
    # Trainer prints its logs to stdout; ours go to the registry and the live display.
    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
    return trainer, tracking


def fit(trainer: Any, checkpoints: Path, resume_from: Path | None) -> None:
    checkpoints.mkdir(parents=True, exist_ok=True)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)


# -- save -----------------------------------------------------------------------------------
