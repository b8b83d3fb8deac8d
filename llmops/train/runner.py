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
import importlib.util
import os
import shutil
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import blake3

from llmops._display import Display
from llmops.data.gate import DataReport, validate_dataset
from llmops.errors import (
    ArtifactNotFoundError,
    InputError,
    LLMOpsError,
    MissingDependencyError,
    RecipeError,
    TrainingError,
)
from llmops.train.environment import capture_environment, world_size
from llmops.train.outputs import check_finite, finish_stored, save_outputs, stored_output
from llmops.train.recipe import Recipe, load_recipe
from llmops.train.runs import RunRecord, Runs, new_run_id
from llmops.train.stage import Inputs, Stage
from llmops.train.trainer import build_trainer, fit

if TYPE_CHECKING:
    from llmops.artifacts import ArtifactStore, ArtifactVersion
    from llmops.artifacts.resolver import ModelResolver

__all__ = ["TrainResult", "train"]


@dataclass(slots=True, kw_only=True, repr=False)
class TrainResult(Display):
    """What a run produced."""

    _repr_fields = ("run_id", "status", "final_loss", "adapter_ref", "seconds")

    run: RunRecord
    adapter: ArtifactVersion | None
    merged: ArtifactVersion | None
    report: DataReport
    seconds: float

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.run.run_id

    @property
    def status(self) -> str:
        """The run's status."""
        return self.run.status

    @property
    def final_loss(self) -> float | None:
        """The last training loss."""
        return self.run.final_loss

    @property
    def adapter_ref(self) -> str | None:
        """``name@version`` of the stored adapter."""
        return self.adapter.ref if self.adapter is not None else None

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
    ws = Stage(artifacts, runs, models, state_dir)
    spec, name, previous = _load_spec(ws, recipe, overrides=overrides, resume=resume)
    device = _device()
    _check_backends(spec, device)
    inputs = _resolve_inputs(ws, spec, recipe=name)
    _check_target_modules(inputs.base_dir, spec.lora.target_modules, recipe=name)
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
    spec = _schedule(spec, report, eval_path=inputs.eval_path)
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
            ws.runs._update(
                run_id, event="run.resume", status="running", error=None,
                attempts=previous.attempts + 1,
            )  # fmt: skip
            ws.runs._forget_after(run_id, checkpoint[0] if checkpoint else 0)

    # -- train and save ---------------------------------------------------------------------
    stored = stored_output(ws, spec, run_id) if previous is not None else None
    if stored is not None:  # killed after the adapter was stored: finish, do not retrain
        run, adapter, merged = finish_stored(ws, spec, inputs, run_id, run_dir, stored)
        return TrainResult(run=run, adapter=adapter, merged=merged, report=report,
                           seconds=time.perf_counter() - started)  # fmt: skip
    try:
        with _third_party_quiet(), _heartbeat(ws.runs if main else None, run_id):
            trainer, tracking = build_trainer(ws if main else None, spec, inputs, tokenizer, run_id,
                                         run_dir, device=device, live=live)  # fmt: skip
            fit(trainer, run_dir / "checkpoints", checkpoint[1] if checkpoint else None)
            if not main:
                seconds = time.perf_counter() - started
                return TrainResult(run=ws.runs.get(run_id), adapter=None, merged=None,
                                   report=report, seconds=seconds)  # fmt: skip
            check_finite(trainer.model, run_id)
            meta = _lineage_meta(spec, run_id, inputs, report, environment)
            adapter, merged = save_outputs(
                ws, spec, inputs, trainer.model, tokenizer, run_dir, meta
            )
    except BaseException as exc:
        full = exc.errno == errno.ENOSPC if isinstance(exc, OSError) else False
        error = _disk_full(run_id, run_dir / "checkpoints", exc) if full else exc
        if main:
            _fail(ws, run_id, error)
        if error is not exc:
            raise error from None
        raise

    # -- finish -----------------------------------------------------------------------------
    done = ws.runs._update(
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
    ws: Stage,
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
                runs._heartbeat(run_id)

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


_TRACKERS = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}
"""``training.report_to`` value -> the module it needs."""


def _check_backends(spec: Recipe, device: str) -> None:
    """What the recipe needs beyond the training stack: bitsandbytes for QLoRA, trackers."""
    if spec.method == "qlora":
        from llmops.train.qlora import check_backend

        check_backend(device)
    for tracker in spec.training.report_to:
        module = _TRACKERS[tracker]
        if importlib.util.find_spec(module) is None:
            install = "'llmops[tensorboard]'" if tracker == "tensorboard" else module
            raise MissingDependencyError(
                f"training.report_to {tracker} needs the Python package {module!r}, which is"
                " not installed",
                hint=f"pip install {install}, or take {tracker} out of training.report_to",
            )


def _schedule(spec: Recipe, report: DataReport, *, eval_path: Path | None) -> Recipe:
    """The recipe with ``max_steps`` computed from ``num_epochs`` (and the rows it counted)."""
    t = spec.training
    if t.num_epochs is None:
        return spec
    train_rows = report.rows - (0 if eval_path is not None else report.eval_rows)
    steps = t.steps_for(train_rows, world=world_size())
    return spec.model_copy(update={"training": t.model_copy(update={"max_steps": steps})})


def _resolve_inputs(ws: Stage, spec: Recipe, *, recipe: str) -> Inputs:
    try:
        return _inputs(ws, spec)
    except RecipeError as exc:  # name the recipe file the problem is in
        raise exc.at(recipe) from None


def _inputs(ws: Stage, spec: Recipe) -> Inputs:
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
    return Inputs(
        ws.models.local_dir(source), base_ref, source.digest, data_path, eval_path, dataset_ref
    )


def _check_target_modules(base_dir: Path, targets: str | list[str], *, recipe: str) -> None:
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
            path=recipe,
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


def _artifact(ws: Stage, ref: str, *, what: str) -> ArtifactVersion:
    try:
        return ws.artifacts.get(ref)
    except (ArtifactNotFoundError, InputError) as exc:
        raise _not_found(ref, what, exc) from None


def _workspace_file(ws: Stage, path: str, *, what: str) -> Path:
    p = ws.models.resolve_path(path)
    if not p.is_file():
        raise RecipeError(
            f"{what} {path!r}: no such file under {ws.models.root}", hint="check the path"
        )
    return p


def _dataset(ws: Stage, spec: Recipe) -> tuple[Path, str | None]:
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


def _store_dataset(ws: Stage, path: Path) -> str:
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
    ws: Stage,
    spec: Recipe,
    name: str,
    run_id: str,
    run_dir: Path,
    inputs: Inputs,
    report: DataReport,
    environment: dict[str, Any],
) -> RunRecord:
    return ws.runs._create(
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
    spec: Recipe, run_id: str, inputs: Inputs, report: DataReport, environment: dict[str, Any]
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


def _fail(ws: Stage, run_id: str, exc: BaseException) -> None:
    if isinstance(exc, KeyboardInterrupt):
        message = "interrupted"
    elif isinstance(exc, LLMOpsError):
        message = exc.one_line()
    else:
        message = " ".join(f"{type(exc).__name__}: {exc}".split())[:2000]
    # If the registry itself is down, the original error matters more than recording it.
    with contextlib.suppress(LLMOpsError):
        ws.runs._update(run_id, event="run.fail", status="failed", error=message, ended_at=_now())


def _disk_full(run_id: str, checkpoints: Path, exc: BaseException) -> TrainingError:
    point = _resume_point(checkpoints)  # also removes the half-written checkpoint
    kept = f"checkpoint-{point[0]} is intact" if point else "no checkpoint was complete yet"
    return TrainingError(
        f"run {run_id}: disk full while writing {getattr(exc, 'filename', None) or checkpoints}; "
        f"{kept}",
        hint=f"free space, then `llmops train --resume {run_id}`",
    )
