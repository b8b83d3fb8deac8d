"""The recipe runner end to end on the tiny model: adapters, lineage, run records, bad input."""

from __future__ import annotations

import errno
import importlib.util
import json
from pathlib import Path

import pytest

from llmops import Workspace
from llmops.errors import (
    BackendUnavailableError,
    DataGateError,
    MissingDependencyError,
    RecipeError,
    TrainingError,
)
from tests.train.conftest import chat_rows, write_jsonl, write_recipe


def test_sft_lora_stores_an_adapter_with_lineage_and_a_run_record(train_ws: Workspace) -> None:
    result = train_ws.train(write_recipe(train_ws.root))
    run = result.run
    assert run.status == "completed" and run.step == 6 and run.attempts == 1
    assert result.adapter is not None and result.adapter.kind == "adapter"
    files = {f.path for f in train_ws.artifacts.manifest(result.adapter).files}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json"} <= files
    assert not any(f.endswith((".bin", ".pt", ".pth")) for f in files)
    meta = result.adapter.meta
    assert meta["run_id"] == run.run_id
    assert meta["recipe_hash"] == run.recipe_hash
    assert meta["dataset_fingerprint"] == run.dataset_fingerprint == result.report.fingerprint
    assert meta["base_model_digest"] == run.base_model_digest
    assert result.adapter.parents == [run.dataset_ref]  # a local base folder is not an artifact
    assert train_ws.artifacts.get(run.dataset_ref).kind == "dataset"
    env = run.environment
    assert env["libraries"]["trl"] and env["libraries"]["peft"] and env["world_size"] == 1
    train_steps = [m for m in train_ws.runs.metrics(run.run_id) if m["split"] == "train"]
    assert [m["step"] for m in train_steps] == [1, 2, 3, 4, 5, 6]
    assert all({"loss", "learning_rate", "grad_norm"} <= m.keys() for m in train_steps)
    assert run.final_loss == pytest.approx(train_steps[-1]["loss"])


def test_adapter_loads_with_peft_and_changes_the_model(train_ws: Workspace, tmp_path: Path) -> None:
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    result = train_ws.train(write_recipe(train_ws.root))
    assert result.adapter is not None
    train_ws.artifacts.pull(result.adapter.ref, tmp_path / "adapter")
    base = AutoModelForCausalLM.from_pretrained(train_ws.root / "models" / "tiny")
    ids = torch.tensor([[1, 5, 6, 7]])
    before = base(ids).logits
    with pytest.warns(FutureWarning, match="is_gradient_checkpointing"):  # peft vs transformers 5
        tuned = PeftModel.from_pretrained(base, tmp_path / "adapter")
    assert not torch.allclose(tuned(ids).logits, before)


def test_base_model_from_the_store_is_a_lineage_parent(train_ws: Workspace) -> None:
    from llmops.artifacts.models import import_model

    base = import_model(train_ws.artifacts, train_ws.root / "models" / "tiny", name="tiny-base")
    recipe = write_recipe(train_ws.root, steps=2, save=2)
    result = train_ws.train(recipe, overrides={"base_model": "tiny-base@1"})
    assert result.adapter is not None
    assert result.run.base_model == "tiny-base@1"
    assert result.run.base_model_digest == base.version.digest
    assert result.adapter.parents[0] == "tiny-base@1"
    # The stored adapter names its base portably and carries a model card, not peft's template.
    folder = train_ws.artifact_dir(result.adapter)
    config = json.loads((folder / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == "tiny-base"
    card = (folder / "README.md").read_text()
    assert card.startswith("---\nlibrary_name: peft\nbase_model: tiny-base\n")
    assert "`tiny-base@1`" in card and result.run.run_id in card and "## Intended use" in card
    assert train_ws.models.show(result.adapter.ref).base_model == "tiny-base@1"
    assert "## Evaluation" in train_ws.models.card(result.adapter.ref)


@pytest.mark.parametrize(("method", "trainer"), [("dora", "sft"), ("lora", "dpo")])
def test_other_methods_and_trainers(train_ws: Workspace, method: str, trainer: str) -> None:
    result = train_ws.train(
        write_recipe(train_ws.root, method=method, trainer=trainer, steps=3, save=3)
    )
    assert result.run.status == "completed" and result.adapter is not None
    adapter_dir = Path(result.run.output_dir) / "adapter"
    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    assert config["use_dora"] is (method == "dora")


def test_qlora_trains_and_merges_onto_the_full_precision_base(train_ws: Workspace) -> None:
    recipe = write_recipe(train_ws.root, method="qlora", steps=3, save=3, extra="  merged: true\n")
    result = train_ws.train(recipe)
    assert result.merged is not None and result.merged.kind == "merged-model"
    assert result.merged.parents[0] == result.adapter.ref  # type: ignore[union-attr]
    files = {f.path: f for f in train_ws.artifacts.manifest(result.merged).files}
    weights = files["model.safetensors"]
    # Merged into float32 weights: no 4-bit tensors, no quantization state.
    assert {t.dtype for t in weights.tensors} == {"F32"}
    assert not any("absmax" in t.name or "quant" in t.name for t in weights.tensors)


def test_the_same_output_name_gets_a_new_version(train_ws: Workspace) -> None:
    recipe = write_recipe(train_ws.root, steps=2, save=2)
    first = train_ws.train(recipe)
    second = train_ws.train(recipe, overrides={"training.learning_rate": 0.002})
    assert first.adapter is not None and second.adapter is not None
    assert (first.adapter.version, second.adapter.version) == (1, 2)
    assert train_ws.artifacts.get("tiny-adapter@1").digest == first.adapter.digest


def test_bad_data_is_refused_before_training_with_row_numbers(train_ws: Workspace) -> None:
    rows = chat_rows()
    rows[4]["messages"][1]["content"] = "   "
    rows[9] = {"messages": [{"role": "robot", "content": "x"}]}
    write_jsonl(train_ws.root / "data" / "chat.jsonl", rows)
    with pytest.raises(DataGateError, match=r"empty_turn \(1 rows, e\.g\. row 5") as info:
        train_ws.train(write_recipe(train_ws.root))
    assert "schema (1 rows, e.g. row 10" in str(info.value)
    assert train_ws.runs.list() == []


def test_wrong_format_for_the_trainer_is_a_recipe_error(train_ws: Workspace) -> None:
    recipe = write_recipe(train_ws.root, trainer="sft")
    with pytest.raises(RecipeError, match=r"trainer 'dpo' needs dataset\.format 'preference'"):
        train_ws.train(recipe, overrides={"trainer": "dpo"})


def test_a_chat_template_that_does_not_render_is_caught_by_the_gate(train_ws: Workspace) -> None:
    recipe = write_recipe(
        train_ws.root,
        extra="chat_template: \"{{ raise_exception('system role not supported') }}\"\n",
    )
    with pytest.raises(DataGateError, match=r"template .* system role not supported"):
        train_ws.train(recipe)


def test_a_missing_base_model_is_a_clear_error(train_ws: Workspace) -> None:
    recipe = write_recipe(train_ws.root)
    with pytest.raises(RecipeError, match="base_model 'no-such-model@3' is neither a folder"):
        train_ws.train(recipe, overrides={"base_model": "no-such-model@3"})
    # The error names the recipe file it is in.
    with pytest.raises(RecipeError, match=r"^\S*recipe\.yaml: base_model 'no-such-model@3'"):
        train_ws.train(recipe, overrides={"base_model": "no-such-model@3"})


def _with_training(recipe: Path, lines: str) -> Path:
    """The recipe with more ``training:`` fields."""
    recipe.write_text(recipe.read_text().replace("output:\n", lines + "output:\n"))
    return recipe


def test_num_epochs_computes_and_records_the_steps(train_ws: Workspace) -> None:
    # 40 rows, 8 held out: 32 training rows in batches of 4 = 8 steps per epoch.
    recipe = _with_training(write_recipe(train_ws.root), "  num_epochs: 0.5\n  eval_steps: 2\n")
    recipe.write_text(recipe.read_text().replace("  max_steps: 6\n", ""))
    result = train_ws.train(recipe, overrides={"dataset.eval_fraction": 0.2})
    assert result.run.max_steps == result.run.step == 4
    assert result.run.recipe["training"]["num_epochs"] == 0.5
    assert result.run.recipe["training"]["max_steps"] == 4
    # The run's last eval loss is one of its final metrics.
    assert "eval_loss" in result.run.final_metrics
    assert train_ws.train_runs.get(result.run_id).final_metrics["loss"] == result.run.final_loss


def test_report_to_tensorboard_writes_event_files(train_ws: Workspace) -> None:
    recipe = _with_training(
        write_recipe(train_ws.root, steps=2, save=2), "  report_to: tensorboard\n"
    )
    result = train_ws.train(recipe)
    events = list(Path(result.run.output_dir).rglob("events.out.tfevents.*"))
    assert events and events[0].stat().st_size > 0
    assert result.run.recipe["training"]["report_to"] == ["tensorboard"]


def test_a_tracker_that_is_not_installed_is_named_before_anything_loads(
    train_ws: Workspace,
) -> None:
    recipe = _with_training(write_recipe(train_ws.root), "  report_to: [wandb]\n")
    if importlib.util.find_spec("wandb") is not None:
        pytest.skip("wandb is installed here")
    with pytest.raises(
        MissingDependencyError,
        match=r"training\.report_to wandb needs .*'wandb'.*pip install wandb",
    ):
        train_ws.train(recipe)
    assert train_ws.train_runs.list() == []


def test_qlora_without_bitsandbytes_fails_before_loading_the_model(
    train_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    import transformers

    monkeypatch.setitem(sys.modules, "bitsandbytes", None)
    monkeypatch.setitem(sys.modules, "bitsandbytes.functional", None)
    loads: list[object] = []
    monkeypatch.setattr(
        transformers.AutoModelForCausalLM, "from_pretrained", lambda *a, **k: loads.append(a)
    )
    with pytest.raises(BackendUnavailableError, match="method 'qlora' needs bitsandbytes"):
        train_ws.train(write_recipe(train_ws.root, method="qlora"))
    assert loads == []


def test_disk_full_while_checkpointing_keeps_the_previous_checkpoint(
    train_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from transformers import Trainer

    real = Trainer._save_checkpoint
    calls = {"n": 0}

    def filling_disk(self: Trainer, model: object, trial: object) -> None:
        calls["n"] += 1
        if calls["n"] == 2:  # the second checkpoint: write part of it, then run out of space
            folder = Path(self.args.output_dir) / f"checkpoint-{self.state.global_step}"
            folder.mkdir(parents=True)
            (folder / "adapter_model.safetensors").write_bytes(b"\0" * 100)
            raise OSError(errno.ENOSPC, "No space left on device", str(folder))
        real(self, model, trial)

    monkeypatch.setattr(Trainer, "_save_checkpoint", filling_disk)
    with pytest.raises(TrainingError, match=r"disk full .* checkpoint-3 is intact") as info:
        train_ws.train(write_recipe(train_ws.root, steps=9, save=3))
    run = train_ws.runs.list()[0]
    assert run.status == "failed" and "disk full" in (run.error or "")
    assert f"--resume {run.run_id}" in str(info.value)
    checkpoints = Path(run.output_dir) / "checkpoints"
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == ["checkpoint-3"]
    monkeypatch.setattr(Trainer, "_save_checkpoint", real)
    resumed = train_ws.train(resume=run.run_id)
    assert resumed.run.status == "completed" and resumed.run.step == 9
    assert resumed.run.attempts == 2


def test_resuming_a_completed_run_is_refused(train_ws: Workspace) -> None:
    from llmops.errors import InputError

    done = train_ws.train(write_recipe(train_ws.root, steps=2, save=2))
    with pytest.raises(InputError, match="already completed"):
        train_ws.train(resume=done.run.run_id)


def test_data_that_fails_the_gate_is_never_stored(train_ws: Workspace) -> None:
    write_jsonl(train_ws.root / "data" / "chat.jsonl", [{"messages": []}] * 5)
    with pytest.raises(DataGateError):
        train_ws.train(write_recipe(train_ws.root))
    assert [v for v in train_ws.artifacts.ls() if v.kind == "dataset"] == []


@pytest.mark.parametrize(
    ("rows", "overrides", "match"),
    [
        (0, {}, "no_training_rows .*nothing to train on: 0 rows"),
        (5, {"dataset.eval_fraction": 0.99}, "nothing to train on: 5 rows, 5 valid, 5 held out"),
    ],
)
def test_nothing_left_to_train_on_is_a_gate_failure(
    train_ws: Workspace, rows: int, overrides: dict[str, object], match: str
) -> None:
    write_jsonl(train_ws.root / "data" / "chat.jsonl", chat_rows(rows))
    with pytest.raises(DataGateError, match=match):
        train_ws.train(write_recipe(train_ws.root), overrides=overrides)
    assert train_ws.runs.list() == []


def test_unknown_target_modules_are_refused_before_the_model_loads(
    train_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    import transformers

    def no_loading(*args: object, **kwargs: object) -> None:
        raise AssertionError("the model was loaded")

    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", no_loading)
    with pytest.raises(RecipeError, match=r"target_modules \['nonexistent_proj'\] are not modules"):
        train_ws.train(
            write_recipe(train_ws.root), overrides={"lora.target_modules": ["nonexistent_proj"]}
        )


def test_a_nan_training_fails_and_stores_nothing(train_ws: Workspace) -> None:
    from safetensors.numpy import load_file, save_file

    weights = train_ws.root / "models" / "tiny" / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if "embed" in k)
    tensors[name][:] = float("nan")
    save_file(tensors, str(weights), metadata={"format": "pt"})
    with pytest.raises(TrainingError, match=r"(loss|grad_norm) became nan at step 1") as info:
        train_ws.train(write_recipe(train_ws.root))
    assert "nothing was stored" in str(info.value)
    (run,) = train_ws.runs.list()
    assert run.status == "failed"
    assert [v for v in train_ws.artifacts.ls() if v.kind == "adapter"] == []


def test_non_finite_adapter_weights_are_never_stored() -> None:
    import torch

    from llmops.train.runner import check_finite

    model = torch.nn.Linear(2, 2)
    check_finite(model, "run-x")
    with torch.no_grad():
        model.weight[0, 0] = float("inf")
    with pytest.raises(TrainingError, match="adapter weight weight is not finite"):
        check_finite(model, "run-x")


def test_a_run_killed_after_storing_its_adapter_resumes_without_a_second_version(
    train_ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    from llmops.train import runner

    real_save = runner.save_outputs

    def save_then_die(*args: object, **kwargs: object) -> object:
        real_save(*args, **kwargs)  # type: ignore[arg-type]
        raise KeyboardInterrupt("killed right after the adapter was stored")

    monkeypatch.setattr(runner, "save_outputs", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        train_ws.train(write_recipe(train_ws.root))
    monkeypatch.undo()
    (run,) = train_ws.runs.list()
    resumed = train_ws.train(resume=run.run_id)
    assert resumed.run.status == "completed" and resumed.run.final_loss is not None
    assert [v.version for v in train_ws.artifacts.ls("tiny-adapter")] == [1]
    assert resumed.adapter is not None and resumed.adapter.meta["run_id"] == run.run_id


def test_adapter_files_are_written_deterministically(train_ws: Workspace, tmp_path: Path) -> None:
    targets = ["v_proj", "q_proj", "o_proj", "k_proj"]
    result = train_ws.train(write_recipe(train_ws.root), overrides={"lora.target_modules": targets})
    assert result.adapter is not None
    train_ws.artifacts.pull(result.adapter.ref, tmp_path / "a")
    text = (tmp_path / "a" / "adapter_config.json").read_text(encoding="utf-8")
    config = json.loads(text)
    assert config["target_modules"] == sorted(config["target_modules"])
    assert list(config) == sorted(config)


def test_training_leaves_the_callers_logging_settings_alone(train_ws: Workspace) -> None:
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_info()
    hf_logging.enable_progress_bar()
    try:
        train_ws.train(write_recipe(train_ws.root, steps=2, save=2))
        assert hf_logging.get_verbosity() == hf_logging.INFO
        assert hf_logging.is_progress_bar_enabled()
    finally:
        hf_logging.set_verbosity_warning()
