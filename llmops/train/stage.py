"""What a training run works with: the stores it was given and the inputs it resolved."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from llmops.artifacts import ArtifactStore
    from llmops.artifacts.resolver import ModelResolver
    from llmops.train.runs import Runs

__all__ = ["Inputs", "Stage"]


@dataclass(slots=True)
class Inputs:
    base_dir: Path
    base_ref: str | None
    base_digest: str
    data_path: Path
    eval_path: Path | None
    dataset_ref: str | None


@dataclass(frozen=True, slots=True)
class Stage:
    """What a run uses: the store, the run records, model files, and a folder for its state."""

    artifacts: ArtifactStore
    runs: Runs
    models: ModelResolver
    state_dir: Path
