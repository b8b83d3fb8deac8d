"""Trainer arguments are derived from the recipe's training fields."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from llmops.train.recipe import TrainingSpec
from llmops.train.trainer import trainer_arguments


def test_every_training_field_reaches_a_real_trainer_argument(tmp_path: Path) -> None:
    from trl import DPOConfig, SFTConfig

    spec = TrainingSpec(batch_size=3, lr_scheduler="cosine", precision="fp32", seed=7)
    args = trainer_arguments(spec, output_dir=tmp_path, device="cpu", has_eval=False)
    for config in (SFTConfig, DPOConfig):
        known = {f.name for f in dataclasses.fields(config)}
        assert set(args) <= known, set(args) - known
    assert args["per_device_train_batch_size"] == args["per_device_eval_batch_size"] == 3
    assert args["lr_scheduler_type"] == "cosine" and args["data_seed"] == args["seed"] == 7
    assert args["eval_strategy"] == "no" and args["eval_steps"] is None
    with_eval = trainer_arguments(spec, output_dir=tmp_path, device="cpu", has_eval=True)
    assert with_eval["eval_steps"] == spec.save_steps
    SFTConfig(**args)  # the trainer accepts them as they are
