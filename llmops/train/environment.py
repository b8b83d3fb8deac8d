"""What a run ran on: library versions, the workspace's git commit, hardware and world size."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from llmops._version import __version__

__all__ = ["LIBRARIES", "capture_environment", "git_state", "world_size"]

LIBRARIES = (
    "torch", "transformers", "peft", "trl", "datasets", "accelerate", "bitsandbytes",
    "safetensors", "tokenizers",
)  # fmt: skip


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def git_state(root: Path) -> dict[str, Any] | None:
    """``{"commit", "dirty"}`` of the git checkout holding ``root``, or None outside git."""
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
        if commit.returncode != 0:
            return None
        status = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=False,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def world_size() -> int:
    """Processes taking part in the run (``accelerate launch`` sets ``WORLD_SIZE``)."""
    try:
        return max(1, int(os.environ.get("WORLD_SIZE", "1")))
    except ValueError:
        return 1


def _hardware() -> dict[str, Any]:
    import torch

    out: dict[str, Any] = {
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
    }
    if torch.cuda.is_available():
        out["cuda"] = torch.version.cuda
        out["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    else:
        out["gpus"] = []
    return out


def capture_environment(root: Path) -> dict[str, Any]:
    """Library versions, git state of ``root``, hardware and world size, for a run record."""
    return {
        "libraries": {"llmops": __version__, **{name: _version(name) for name in LIBRARIES}},
        "git": git_state(root),
        "hardware": _hardware(),
        "world_size": world_size(),
    }
