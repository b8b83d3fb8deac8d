"""Registry fixtures: a workspace with a base model and two adapter versions (tiny safetensors
files, pushed as artifacts), and eval runs that tested given versions over HTTP."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from safetensors.numpy import save_file

from llmops import Workspace
from llmops.evals.testing import MockServer

CAPITALS = {"France": "Paris", "Spain": "Madrid", "Italy": "Rome", "Japan": "Tokyo",
            "Kenya": "Nairobi", "Peru": "Lima", "Chile": "Santiago", "Egypt": "Cairo"}  # fmt: skip


def model_folder(root: Path, seed: int, *, kind: str = "adapter") -> Path:
    root.mkdir(parents=True, exist_ok=True)
    weights = np.random.default_rng(seed).standard_normal((4, 4)).astype(np.float32)
    name = "adapter_model.safetensors" if kind == "adapter" else "model.safetensors"
    save_file({"w": weights}, str(root / name))
    (root / ("adapter_config.json" if kind == "adapter" else "config.json")).write_text("{}")
    return root


@pytest.fixture
def reg_ws(ws: Workspace, tmp_path: Path) -> Workspace:
    ws.artifacts.push(model_folder(tmp_path / "base", 0, kind="base"), name="base",
                      kind="base-model")  # fmt: skip
    for seed in (1, 2):
        ws.artifacts.push(model_folder(tmp_path / f"a{seed}", seed), name="support-lora",
                          kind="adapter", parents=["base@1"])  # fmt: skip
    return ws


def responder(body: dict[str, Any]) -> str:
    """Model ``good`` names every capital; ``bad`` names none; ``half`` every other one."""
    question = str(body["messages"][-1]["content"])
    model = body.get("model")
    for i, (country, city) in enumerate(CAPITALS.items()):
        if country in question:
            right = model == "good" or (model == "half" and i % 2 == 0)
            return f"The capital is {city}." if right else "I do not know."
    return "?"


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer(responder) as s:
        yield s


def evaluate(
    ws: Workspace, root: Path, url: str, targets: dict[str, tuple[str, str]], *,
    suite: str = "capitals",
) -> str:  # fmt: skip
    """Run suite ``suite`` with one target per ``name: (model_version, model)``; the run id."""
    lines = [
        f"  - name: {name}\n    prompt: [{{role: user, content: 'Capital of {{{{ c }}}}?'}}]\n"
        f"    model: {{provider: openai, name: {model}, api_base: '{url}'}}\n"
        f"    model_version: {ref}\n"
        for name, (ref, model) in targets.items()
    ]
    cases = "".join(
        f"  - vars: {{c: {country}}}\n    assert: [{{type: icontains, value: {city}}}]\n"
        for country, city in CAPITALS.items()
    )
    path = root / f"{suite}.yaml"
    path.write_text("targets:\n" + "".join(lines) + "cases:\n" + cases)
    return ws.evaluate(path).run.run_id


def write_policy(ws: Workspace, text: str, name: str = "support-lora") -> Path:
    folder = ws.root / "policies"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.yaml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def acting_as(ws: Workspace, user: str) -> Iterator[None]:
    before = ws.models.actor
    ws.models.actor = user
    try:
        yield
    finally:
        ws.models.actor = before
