"""The layout the architecture promises: small modules, and stages that never reach back into
the workspace (it composes them; they take the narrow inputs they use)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "llmops"
STAGES = ("prompts", "artifacts", "data", "train", "evals", "registry")


@pytest.mark.parametrize(
    "path", sorted(PACKAGE.rglob("*.py")), ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_no_module_is_over_600_lines(path: Path) -> None:
    lines = path.read_text(encoding="utf-8").count("\n")
    assert lines <= 600, f"{path.relative_to(PACKAGE)} has {lines} lines: split it by concern"


@pytest.mark.parametrize("stage", STAGES)
def test_stages_never_import_the_workspace(stage: str) -> None:
    offenders = []
    for path in (PACKAGE / stage).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names: list[str] = []
            if isinstance(node, ast.ImportFrom):
                names = [node.module or ""] + [f"{node.module}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            if any(n == "llmops.workspace" or n.startswith("llmops.workspace.") for n in names):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
            if (
                isinstance(node, ast.ImportFrom)
                and node.module == "llmops"
                and any(a.name == "Workspace" for a in node.names)
            ):
                offenders.append(f"{path.relative_to(PACKAGE)}:{node.lineno}")
    assert offenders == []
