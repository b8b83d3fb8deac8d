"""The recipe runner: one fine-tuning run, top to bottom.

    setup    read the recipe, resolve the base model and dataset, check the backend
    gate     validate the data with the model's tokenizer; refuse bad data with row numbers
    record   create (or resume) the run record with everything that went in
    train    load the model (4-bit for QLoRA), attach LoRA/DoRA, run trl's SFT or DPO trainer
    save     store the adapter (and the optional merged model) as artifact versions with lineage
    finish   mark the run completed, or failed with its one-line error

Training itself is trl + peft; this module only decides what goes in and records what comes out.
"""

from __future__ import annotations

import contextlib
import errno
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from llmops.data.formats import FORMATS, Row
from llmops.data.gate import DataReport, load_split, split_indices, validate_dataset
from llmops.errors import (
    ArtifactNotFoundError,
    InputError,
    LLMOpsError,
    RecipeError,
    TrainingError,
)
from llmops.train.environment import capture_environment, world_size
from llmops.train.recipe import Recipe, load_recipe
from llmops.train.runs import RunRecord, Runs, new_run_id

if TYPE_CHECKING:
    from llmops.artifacts import ArtifactStore, ArtifactVersion
    from llmops.artifacts.resolver import ModelResolver

__all__ = ["TrainResult", "train"]


@dataclass(slots=True, kw_only=True)
class TrainResult:
    """What a run produced."""

    run: RunRecord
    adapter: ArtifactVersion | None
    merged: ArtifactVersion | None
    report: DataReport
    seconds: float

    def to_json(self) -> dict[str, Any]:
        """The ``llmops train --json`` contract: run_id, status, final_loss, adapter, ..."""

        def art(v: ArtifactVersion | None) -> dict[str, Any] | None:
            if v is None:
                return None
            return {"name": v.name, "version": v.version, "digest": v.digest, "ref": v.ref}

        return {
            "run_id": self.run.run_id,
            "status": self.run.status,
            "final_loss": self.run.final_loss,
            "steps": self.run.step,
            "adapter": art(self.adapter),
            "merged": art(self.merged),
            "recipe_hash": self.run.recipe_hash,
            "dataset_fingerprint": self.run.dataset_fingerprint,
            "base_model_digest": self.run.base_model_digest,
            "attempts": self.run.attempts,
            "seconds": round(self.seconds, 2),
        }


@dataclass(slots=True)
class _Inputs:
    base_dir: Path
    base_ref: str | None
    base_digest: str
    data_path: Path
    eval_path: Path | None
    dataset_ref: str | None


@dataclass(frozen=True, slots=True)
class _Stage:
    """What a run uses: the store, the run records, model files, and a folder for its state."""

    artifacts: ArtifactStore
    runs: Runs
    models: ModelResolver
    state_dir: Path


def train(
    recipe: str | os.PathLike[str] | Recipe | None = None,
    *,
    artifacts: ArtifactStore,
    runs: Runs,
    models: ModelResolver,
    state_dir: Path,
    overrides: dict[str, Any] | None = None,
    resume: str | None = None,
    live: bool = False,
) -> TrainResult:
    """Run a recipe (or resume run ``resume``) and store the adapter it trains.

    Args:
        recipe: A recipe file (relative paths from ``models.root``) or a :class:`Recipe`.
        artifacts: Where the base model may come from and the adapter goes.
        runs: The run records.
        models: Resolves ``base_model`` and local data paths.
        state_dir: Run folders (checkpoints, adapter files) go under ``state_dir/runs``.

    Raises:
        RecipeError: The recipe is invalid.
        DataGateError: The dataset failed the data gate (nothing was trained).
        BackendUnavailableError: QLoRA without a usable bitsandbytes.
        TrainingError: Training stopped (disk full, ...); the last checkpoint stays intact.
    """
    started = time.perf_counter()
    # -- setup ------------------------------------------------------------------------------
    ws = _Stage(artifacts, runs, models, state_dir)
    spec, name, previous = _load_spec(ws, recipe, overrides=overrides, resume=resume)
    device = _device()
    if spec.method == "qlora":
        from llmops.train.qlora import check_backend

        check_backend(device)
    inputs = _resolve_inputs(ws, spec)
    _check_target_modules(inputs.base_dir, spec.lora.target_modules)
    tokenizer = _tokenizer(inputs.base_dir, spec)

    # -- gate -------------------------------------------------------------------------------
    report = validate_dataset(
        inputs.data_path,
        spec.dataset.format,
        tokenizer=tokenizer,
        chat_template=spec.chat_template,
        max_length=spec.training.max_length,
        eval_path=inputs.eval_path,
        eval_fraction=spec.dataset.eval_fraction,
        seed=spec.training.seed,
        thresholds=spec.gate,
    )
    report.raise_if_failed()
    if inputs.dataset_ref is None and main_process():
        inputs.dataset_ref = _store_dataset(ws, inputs.data_path)  # only data that passed

    # -- record -----------------------------------------------------------------------------
    main = main_process()
    environment = previous.environment if previous else capture_environment(ws.models.root)
    if previous is None:
        run_id = _run_id(spec)
        run_dir = ws.state_dir / "runs" / run_id
        if main:
            _start_record(ws, spec, name, run_id, run_dir, inputs, report, environment)
        checkpoint = None
    else:
        run_id, run_dir = previous.run_id, Path(previous.output_dir)
        checkpoint = _resume_point(run_dir / "checkpoints")
        if main:
            ws.runs.update(
                run_id, event="run.resume", status="running", error=None,
                attempts=previous.attempts + 1,
            )  # fmt: skip
            ws.runs.forget_after(run_id, checkpoint[0] if checkpoint else 0)

    # -- train and save ---------------------------------------------------------------------
    stored = _stored_output(ws, spec, run_id) if previous is not None else None
    if stored is not None:  # killed after the adapter was stored: finish, do not retrain
        run, adapter, merged = _finish_stored(ws, spec, inputs, run_id, run_dir, stored)
        return TrainResult(run=run, adapter=adapter, merged=merged, report=report,
                           seconds=time.perf_counter() - started)  # fmt: skip
    try:
        with _third_party_quiet(), _heartbeat(ws.runs if main else None, run_id):
            trainer, tracking = _trainer(ws if main else None, spec, inputs, tokenizer, run_id,
                                         run_dir, device=device, live=live)  # fmt: skip
            _fit(trainer, run_dir / "checkpoints", checkpoint[1] if checkpoint else None)
            if not main:
                seconds = time.perf_counter() - started
                return TrainResult(run=ws.runs.get(run_id), adapter=None, merged=None,
                                   report=report, seconds=seconds)  # fmt: skip
            _check_finite(trainer.model, run_id)
            meta = _lineage_meta(spec, run_id, inputs, report, environment)
            adapter, merged = _save(ws, spec, inputs, trainer.model, tokenizer, run_dir, meta)
    except BaseException as exc:
        full = exc.errno == errno.ENOSPC if isinstance(exc, OSError) else False
        error = _disk_full(run_id, run_dir / "checkpoints", exc) if full else exc
        if main:
            _fail(ws, run_id, error)
        if error is not exc:
            raise error from None
        raise

    # -- finish -----------------------------------------------------------------------------
    done = ws.runs.update(
        run_id, event="run.complete", status="completed", ended_at=_now(),
        final_loss=tracking.last_loss, adapter_ref=adapter.ref,
        merged_ref=merged.ref if merged else None,
    )  # fmt: skip
    return TrainResult(
        run=done, adapter=adapter, merged=merged, report=report,
        seconds=time.perf_counter() - started,
    )  # fmt: skip


def _check_stack() -> None:
    """The training stack is installed (else one line naming ``llmops[train]``), and loaded
    with bitsandbytes' import-time warnings about optional CPU kernels kept quiet."""
    from llmops._extras import quiet_import, require

    require("torch", "transformers", "peft", "trl", "datasets", "accelerate", feature="training")
    for module in ("peft", "trl"):
        quiet_import(module, feature="training")


def _load_spec(
    ws: _Stage,
    recipe: str | os.PathLike[str] | Recipe | None,
    *,
    overrides: dict[str, Any] | None,
    resume: str | None,
) -> tuple[Recipe, str, RunRecord | None]:
    """The recipe to run, its name, and the run being resumed (if any)."""
    _check_stack()
    if resume:
        previous = ws.runs.get(resume)
        if previous.status == "completed":
            raise InputError(
                f"run {previous.run_id} already completed", hint="start a new run instead"
            )
        if overrides:
            raise InputError("--set cannot change a resumed run", hint="resume without --set")
        resolved = {k: v for k, v in previous.recipe.items() if k != "format_version"}
        return Recipe.model_validate(resolved), previous.recipe_name, previous
    if isinstance(recipe, Recipe):
        return recipe, "<python>", None
    if recipe is None:
        raise TypeError("give a recipe or a run id to resume")
    return load_recipe(recipe, overrides=overrides), str(recipe), None


# Deprecations raised by one training library against another (peft reading a transformers
# property renamed in 5.x): nothing a recipe author can act on.
_THIRD_PARTY_DEPRECATIONS = (r"`is_gradient_checkpointing` is deprecated",)


@contextlib.contextmanager
def _third_party_quiet() -> Iterator[None]:
    """While training: transformers logs errors only and no library draws progress bars (ours
    is the live line); the caller's settings come back afterwards."""
    from datasets.utils import logging as ds_logging
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_bars, ds_bars = hf_logging.is_progress_bar_enabled(), ds_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    ds_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():
            for message in _THIRD_PARTY_DEPRECATIONS:
                warnings.filterwarnings("ignore", message=message, category=FutureWarning)
            yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if hf_bars:
            hf_logging.enable_progress_bar()
        if ds_bars:
            ds_logging.enable_progress_bar()


@contextlib.contextmanager
def _heartbeat(runs: Runs | None, run_id: str) -> Iterator[None]:
    """Keep the run's heartbeat fresh while it works (loading, training, saving), so that a
    killed run shows as ``interrupted`` and a live one never does."""
    if runs is None:
        yield
        return
    import threading

    from llmops.train.runs import HEARTBEAT_S

    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(HEARTBEAT_S):
            with contextlib.suppress(LLMOpsError):
                runs.heartbeat(run_id)

    thread = threading.Thread(target=beat, name="llmops-heartbeat", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join(timeout=5)


def main_process() -> bool:
    """Rank 0 (or the only process): the one that writes records and artifacts."""
    return int(os.environ.get("RANK", "0")) == 0


def _now() -> Any:
    from llmops.db.timestamps import utcnow

    return utcnow()


def _device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _run_id(spec: Recipe) -> str:
    """A new id; under ``accelerate launch`` every process derives the same one."""
    if world_size() > 1:
        launch = "|".join(
            os.environ.get(k, "")
            for k in ("TORCHELASTIC_RUN_ID", "MASTER_ADDR", "MASTER_PORT", "LLMOPS_RUN_ID")
        )
        return f"run-{blake3.blake3((launch + spec.digest()).encode()).hexdigest()[:12]}"
    return os.environ.get("LLMOPS_RUN_ID") or new_run_id()


# -- setup ----------------------------------------------------------------------------------


def _resolve_inputs(ws: _Stage, spec: Recipe) -> _Inputs:
    base = spec.base_model
    try:
        source = ws.models.source(base)
    except (ArtifactNotFoundError, InputError) as exc:
        raise _not_found(base, "base_model", exc) from None
    if source.folder is not None and not (source.folder / "config.json").is_file():
        raise RecipeError(
            f"base_model {base!r} is a folder without config.json",
            hint="point at a Hugging Face model folder or an artifact reference",
        )
    base_ref = source.version.ref if source.version is not None else None
    data_path, dataset_ref = _dataset(ws, spec)
    eval_path = None
    if spec.dataset.eval_path:
        eval_path = _workspace_file(ws, spec.dataset.eval_path, what="dataset.eval_path")
    return _Inputs(
        ws.models.local_dir(source), base_ref, source.digest, data_path, eval_path, dataset_ref
    )


def _check_target_modules(base_dir: Path, targets: str | list[str]) -> None:
    """Refuse ``lora.target_modules`` the base model does not have, before loading it (read
    from the safetensors headers: the module names are the weights' names less ``.weight``)."""
    if isinstance(targets, str):
        return  # all-linear
    from llmops.artifacts.tensors import read_header

    modules: set[str] = set()
    for file in sorted(base_dir.glob("*.safetensors")):
        with file.open("rb") as fh:
            header = read_header(fh, path=file.name, file_size=file.stat().st_size)
        for tensor in header.tensors:
            parts = tensor.name.split(".")[:-1]  # drop .weight / .bias
            modules.update(".".join(parts[i:]) for i in range(len(parts)))
    if not modules:
        return  # no safetensors to read names from: peft will say
    unknown = [t for t in targets if t not in modules]
    if unknown:
        leaves = sorted({m.rsplit(".", 1)[-1] for m in modules if "proj" in m or "fc" in m})
        raise RecipeError(
            f"lora.target_modules {unknown} are not modules of the base model",
            hint=f"use module names it has (e.g. {', '.join(leaves[:8]) or 'all-linear'}),"
            " or all-linear",
        )


def _not_found(ref: str, what: str, exc: LLMOpsError) -> RecipeError:
    return RecipeError(
        f"{what} {ref!r} is neither a folder in the workspace nor a stored artifact "
        f"({exc.message})",
        hint="import it with `llmops models import-smollm2` / `llmops artifacts push`, "
        "or give a local Hugging Face folder",
    )


def _artifact(ws: _Stage, ref: str, *, what: str) -> ArtifactVersion:
    try:
        return ws.artifacts.get(ref)
    except (ArtifactNotFoundError, InputError) as exc:
        raise _not_found(ref, what, exc) from None


def _workspace_file(ws: _Stage, path: str, *, what: str) -> Path:
    p = ws.models.resolve_path(path)
    if not p.is_file():
        raise RecipeError(
            f"{what} {path!r}: no such file under {ws.models.root}", hint="check the path"
        )
    return p


def _dataset(ws: _Stage, spec: Recipe) -> tuple[Path, str | None]:
    """The data file, and the dataset artifact that records it for lineage."""
    if spec.dataset.artifact:
        version = _artifact(ws, spec.dataset.artifact, what="dataset.artifact")
        folder = ws.models.artifact_dir(version)
        files = [p for p in folder.rglob("*") if p.suffix in (".jsonl", ".csv", ".parquet")]
        if len(files) != 1:
            raise RecipeError(
                f"dataset.artifact {version.ref} holds {len(files)} data files, expected one",
                hint="store one .jsonl, .csv or .parquet file per dataset artifact",
            )
        return files[0], version.ref
    assert spec.dataset.path is not None  # the schema requires path or artifact
    return _workspace_file(ws, spec.dataset.path, what="dataset.path"), None


def _store_dataset(ws: _Stage, path: Path) -> str:
    """Store a data file that passed the gate as a ``dataset`` artifact (for lineage)."""
    name = "".join(c if c.isalnum() or c in "-_." else "-" for c in path.stem)[:100] or "dataset"
    pushed = ws.artifacts.push(path, name=name, kind="dataset", message="training data")
    return pushed.version.ref


def _tokenizer(base_dir: Path, spec: Recipe) -> Any:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_dir)
    if spec.chat_template:
        tokenizer.chat_template = spec.chat_template
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


# -- record ---------------------------------------------------------------------------------


def _start_record(
    ws: _Stage,
    spec: Recipe,
    name: str,
    run_id: str,
    run_dir: Path,
    inputs: _Inputs,
    report: DataReport,
    environment: dict[str, Any],
) -> RunRecord:
    return ws.runs.create(
        id=run_id, recipe_name=name, recipe=spec.resolved(), recipe_hash=spec.digest(),
        dataset_fingerprint=report.fingerprint, dataset_ref=inputs.dataset_ref or "",
        base_model=inputs.base_ref or str(inputs.base_dir), base_model_digest=inputs.base_digest,
        seed=spec.training.seed, environment=environment,
        output_dir=str(run_dir), max_steps=spec.training.max_steps,
    )  # fmt: skip


def _resume_point(checkpoints: Path) -> tuple[int, Path] | None:
    """The newest complete checkpoint; incomplete newer ones (a kill mid-save) are removed."""
    from llmops.train.callbacks import complete_checkpoints

    done = complete_checkpoints(checkpoints)
    newest = done[-1] if done else None
    for path in checkpoints.glob("checkpoint-*"):
        if newest is None or (path != newest[1] and path not in {p for _, p in done}):
            shutil.rmtree(path, ignore_errors=True)
    return newest


def _lineage_meta(
    spec: Recipe, run_id: str, inputs: _Inputs, report: DataReport, environment: dict[str, Any]
) -> dict[str, Any]:
    """What the adapter was made from: the run, recipe, base model, data and code."""
    return {
        "run_id": run_id,
        "recipe_hash": spec.digest(),
        "recipe": spec.resolved(),
        "method": spec.method,
        "trainer": spec.trainer,
        "base_model": inputs.base_ref or str(inputs.base_dir),
        "base_model_digest": inputs.base_digest,
        "dataset": inputs.dataset_ref,
        "dataset_fingerprint": report.fingerprint,
        "code": {"llmops": environment["libraries"]["llmops"], "git": environment["git"]},
    }


# -- train ----------------------------------------------------------------------------------


def _rows(rows: list[Row], fmt: str) -> Any:
    from datasets import Dataset

    fields = FORMATS[fmt]
    return Dataset.from_list([{f: r.data[f] for f in fields} for r in rows])


def _trainer(
    ws: _Stage | None,
    spec: Recipe,
    inputs: _Inputs,
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
    common: dict[str, Any] = {
        "output_dir": str(run_dir / "checkpoints"), "max_steps": t.max_steps,
        "per_device_train_batch_size": t.batch_size, "per_device_eval_batch_size": t.batch_size,
        "gradient_accumulation_steps": t.gradient_accumulation_steps,
        "learning_rate": t.learning_rate, "lr_scheduler_type": t.lr_scheduler,
        "warmup_steps": t.warmup_steps, "weight_decay": t.weight_decay,
        "max_grad_norm": t.max_grad_norm, "logging_steps": t.logging_steps,
        "save_steps": t.save_steps, "save_total_limit": t.save_total_limit, "seed": t.seed,
        "data_seed": t.seed, "report_to": [], "disable_tqdm": True, "use_cpu": device == "cpu",
        "max_length": t.max_length, "bf16": t.precision == "bf16", "fp16": t.precision == "fp16",
        "activation_checkpointing": t.gradient_checkpointing, "dataloader_num_workers": 0,
        "eval_strategy": "steps" if has_eval else "no",
        "eval_steps": (t.eval_steps or t.save_steps) if has_eval else None,
    }  # fmt: skip
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


def _fit(trainer: Any, checkpoints: Path, resume_from: Path | None) -> None:
    checkpoints.mkdir(parents=True, exist_ok=True)
    trainer.train(resume_from_checkpoint=str(resume_from) if resume_from else None)


# -- save -----------------------------------------------------------------------------------


def _check_finite(model: Any, run_id: str) -> None:
    """Refuse to store an adapter holding NaN or infinite weights."""
    import torch

    for name, param in model.named_parameters():
        if param.requires_grad and not bool(torch.isfinite(param.detach()).all()):
            raise TrainingError(
                f"run {run_id}: adapter weight {name} is not finite (NaN or inf); nothing was"
                " stored",
                hint="lower training.learning_rate or lora.alpha, or check the data",
            )


def _stored_output(
    ws: _Stage, spec: Recipe, run_id: str
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


def _finish_stored(
    ws: _Stage,
    spec: Recipe,
    inputs: _Inputs,
    run_id: str,
    run_dir: Path,
    stored: tuple[ArtifactVersion, ArtifactVersion | None],
) -> tuple[RunRecord, ArtifactVersion, ArtifactVersion | None]:
    """Complete a run whose adapter is stored (merging it first if that was cut short)."""
    adapter, merged = stored
    if spec.output.merged and merged is None:
        merged = _merge(ws, spec, inputs, ws.models.artifact_dir(adapter), run_dir / "merged",
                        adapter, adapter.meta)  # fmt: skip
    run = ws.runs.update(
        run_id, event="run.complete", status="completed", ended_at=_now(),
        final_loss=_last_loss(ws, run_id), adapter_ref=adapter.ref,
        merged_ref=merged.ref if merged else None,
    )  # fmt: skip
    return run, adapter, merged


def _last_loss(ws: _Stage, run_id: str) -> float | None:
    losses = [m["loss"] for m in ws.runs.metrics(run_id) if m.get("loss") is not None]
    return float(losses[-1]) if losses else None


def _canonical_adapter_config(adapter_dir: Path) -> None:
    """Rewrite ``adapter_config.json`` with sorted keys and sorted name lists: peft writes
    ``target_modules`` from a set, whose order changes from process to process, so the same
    training would otherwise store a different digest."""
    import json

    path = adapter_dir / "adapter_config.json"
    if not path.is_file():
        return
    config = json.loads(path.read_text(encoding="utf-8"))
    for key in ("target_modules", "modules_to_save", "exclude_modules", "layers_to_transform"):
        value = config.get(key)
        if isinstance(value, list) and all(isinstance(v, str | int) for v in value):
            config[key] = sorted(value, key=str)
    path.write_text(json.dumps(config, indent=2, sort_keys=True) + "\n", encoding="utf-8")


def _save(
    ws: _Stage,
    spec: Recipe,
    inputs: _Inputs,
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
    _canonical_adapter_config(adapter_dir)
    lineage = [r for r in (inputs.base_ref, inputs.dataset_ref) if r]
    adapter = ws.artifacts.push(
        adapter_dir, name=spec.output.name, kind="adapter", parents=lineage, meta=meta,
        message=f"trained by {meta['run_id']}",
    ).version  # fmt: skip
    merged = None
    if spec.output.merged:
        merged = _merge(ws, spec, inputs, adapter_dir, run_dir / "merged", adapter, meta)
    return adapter, merged


def _merge(
    ws: _Stage,
    spec: Recipe,
    inputs: _Inputs,
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


def _fail(ws: _Stage, run_id: str, exc: BaseException) -> None:
    if isinstance(exc, KeyboardInterrupt):
        message = "interrupted"
    elif isinstance(exc, LLMOpsError):
        message = exc.one_line()
    else:
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
    # If the registry itself is down, the original error matters more than recording it.
    with contextlib.suppress(LLMOpsError):
        ws.runs.update(run_id, event="run.fail", status="failed", error=message, ended_at=_now())


def _disk_full(run_id: str, checkpoints: Path, exc: BaseException) -> TrainingError:
    point = _resume_point(checkpoints)  # also removes the half-written checkpoint
    kept = f"checkpoint-{point[0]} is intact" if point else "no checkpoint was complete yet"
    return TrainingError(
        f"run {run_id}: disk full while writing {getattr(exc, 'filename', None) or checkpoints}; "
        f"{kept}",
        hint=f"free space, then `llmops train --resume {run_id}`",
    )
