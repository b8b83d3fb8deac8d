"""Training fixtures: one tiny Llama per test session, chat and preference datasets, and a
workspace (SQLite or PostgreSQL) that holds them."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from llmops import Workspace


def chat_rows(n: int = 40) -> list[dict[str, Any]]:
    return [
        {
            "messages": [
                {"role": "user", "content": f"what is {i} plus {i}?"},
                {"role": "assistant", "content": f"{i} plus {i} equals {2 * i}."},
            ]
        }
        for i in range(n)
    ]


def preference_rows(n: int = 24) -> list[dict[str, Any]]:
    return [
        {
            "prompt": [{"role": "user", "content": f"say hello number {i}"}],
            "chosen": [{"role": "assistant", "content": f"hello, friend {i}!"}],
            "rejected": [{"role": "assistant", "content": f"go away {i}."}],
        }
        for i in range(n)
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


RECIPE = """\
base_model: models/tiny
method: {method}
trainer: {trainer}
dataset:
  path: data/{data}
  format: {fmt}
lora:
  r: 4
  alpha: 8
training:
  max_steps: {steps}
  save_steps: {save}
  max_length: 64
  learning_rate: 0.001
  batch_size: 4
output:
  name: {name}
"""


def write_recipe(
    root: Path,
    *,
    method: str = "lora",
    trainer: str = "sft",
    steps: int = 6,
    save: int = 3,
    name: str = "tiny-adapter",
    file: str = "recipe.yaml",
    extra: str = "",
) -> Path:
    data, fmt = ("prefs.jsonl", "preference") if trainer == "dpo" else ("chat.jsonl", "chat")
    text = RECIPE.format(method=method, trainer=trainer, data=data, fmt=fmt, steps=steps,
                         save=save, name=name) + extra  # fmt: skip
    path = root / file
    path.write_text(text, encoding="utf-8")
    return path


@pytest.fixture
def train_ws(ws_root: Path, tiny_model: Path) -> Iterator[Workspace]:
    """A workspace with the tiny model under models/tiny and data under data/."""
    shutil.copytree(tiny_model, ws_root / "models" / "tiny")
    write_jsonl(ws_root / "data" / "chat.jsonl", chat_rows())
    write_jsonl(ws_root / "data" / "prefs.jsonl", preference_rows())
    ws = Workspace.open(ws_root)
    yield ws
    ws.close()
