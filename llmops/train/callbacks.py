"""Trainer callbacks: run tracking, checkpoint completion markers, QLoRA guard, live progress.

Imported only by the runner (it needs transformers).
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

from transformers import TrainerCallback

from llmops._liveline import LiveLine, bar
from llmops.train.qlora import keep_trainable_layout
from llmops.train.runs import Runs

__all__ = ["CHECKPOINT_MARKER", "QLoRAGuard", "TrackingCallback", "complete_checkpoints"]

CHECKPOINT_MARKER = "llmops-checkpoint.json"
"""Written into a checkpoint folder after the trainer finished writing it: only marked
checkpoints are resumed from."""

_KEEP = {"loss", "learning_rate", "grad_norm", "epoch", "mean_token_accuracy", "eval_loss"}


def complete_checkpoints(folder: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the marked checkpoints under ``folder``, oldest first."""
    found = []
    for path in folder.glob("checkpoint-*"):
        suffix = path.name.removeprefix("checkpoint-")
        if suffix.isdigit() and (path / CHECKPOINT_MARKER).is_file():
            found.append((int(suffix), path))
    return sorted(found)


class TrackingCallback(TrainerCallback):  # type: ignore[misc]
    """Writes metrics, heartbeats and checkpoint steps of a run to the registry."""

    def __init__(self, runs: Runs | None, run_id: str, *, max_steps: int, live: bool) -> None:
        self.runs = runs
        self.run_id = run_id
        self.last_loss: float | None = None
        self._tokens: tuple[float, float] | None = None
        self.max_steps = max_steps
        self._live = LiveLine() if live else None

    def on_log(self, args: Any, state: Any, control: Any, logs: Any = None, **kw: Any) -> None:
        if not logs or not state.is_world_process_zero:
            return
        step = int(state.global_step)
        if "eval_loss" in logs:
            values = {k: float(v) for k, v in logs.items() if k in _KEEP and _finite(v)}
            if self.runs is not None:
                self.runs._log(self.run_id, step, values, split="eval")
            return
        if "loss" not in logs:
            return  # the end-of-training summary
        for key in ("loss", "grad_norm"):
            if key == "grad_norm" and getattr(args, "fp16", False):
                continue  # fp16 loss scaling skips steps with inf gradients by design
            if key in logs and not _finite(logs[key]):
                from llmops.errors import TrainingError

                raise TrainingError(
                    f"run {self.run_id}: {key} became {logs[key]} at step {step}; training"
                    " stopped and nothing was stored",
                    hint="lower training.learning_rate or lora.alpha, or check the data",
                )
        values = {k: float(v) for k, v in logs.items() if k in _KEEP and _finite(v)}
        tokens = logs.get("num_tokens")
        now = time.perf_counter()
        if tokens is not None:
            if self._tokens is not None and now > self._tokens[1]:
                values["tokens_per_s"] = (float(tokens) - self._tokens[0]) / (now - self._tokens[1])
            self._tokens = (float(tokens), now)
        self.last_loss = values.get("loss")
        if self.runs is not None:
            self.runs._log(self.run_id, step, values)
        if self._live is not None:
            self._live.show(self._status(step, values), force=step == self.max_steps)

    def _status(self, step: int, values: dict[str, float]) -> str:
        assert self._live is not None
        parts = [f"step {step}/{self.max_steps} {bar(step, self.max_steps)}",
                 f"loss {values.get('loss', 0):.4f}"]  # fmt: skip
        if "learning_rate" in values:
            parts.append(f"lr {values['learning_rate']:.2e}")
        if "tokens_per_s" in values:
            parts.append(f"{values['tokens_per_s']:.0f} tok/s")
        parts.append(f"{self._live.elapsed:.0f}s")
        return "  ".join(parts)

    def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if not state.is_world_process_zero:
            return
        step = int(state.global_step)
        folder = Path(args.output_dir) / f"checkpoint-{step}"
        if folder.is_dir():
            marker = {"step": step, "loss": self.last_loss, "run_id": self.run_id}
            tmp = folder / (CHECKPOINT_MARKER + ".tmp")
            tmp.write_text(json.dumps(marker), encoding="utf-8")
            tmp.replace(folder / CHECKPOINT_MARKER)
            if self.runs is not None:
                self.runs._update(self.run_id, last_checkpoint_step=step)

    def on_train_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        if self._live is not None:
            self._live.close()


class QLoRAGuard(TrainerCallback):  # type: ignore[misc]
    """Before every step, puts 4-bit weights back into the layout with working gradients."""

    def __init__(self) -> None:
        self.restored = 0

    def on_train_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.restored += keep_trainable_layout(kw["model"])

    def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
        self.restored += keep_trainable_layout(kw["model"])


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and math.isfinite(value)
