"""Differences between two prompt versions: messages, template, variables, model parameters."""

from __future__ import annotations

import difflib
from typing import Any

from pydantic import BaseModel, ConfigDict

from llmops.prompts.spec import PromptSpec

__all__ = ["FieldChange", "PromptDiff", "diff_specs"]


class FieldChange(BaseModel):
    """A changed value: ``before`` is None when added, ``after`` is None when removed."""

    model_config = ConfigDict(frozen=True)

    key: str
    """Dotted name of what changed, e.g. ``variables.text`` or ``model.temperature``."""
    before: Any = None
    """Old value."""
    after: Any = None
    """New value."""


class PromptDiff(BaseModel):
    """What changed from version ``a`` to version ``b``."""

    model_config = ConfigDict(frozen=True)

    a: str
    """The old version (``name@N``)."""
    b: str
    """The new version."""
    text: str
    """Unified diff of the templates (messages with their roles, or the text template)."""
    changes: list[FieldChange]
    """Changed variables, model parameters, description and metadata."""

    @property
    def identical(self) -> bool:
        """Whether nothing changed."""
        return not self.text and not self.changes

    def __str__(self) -> str:
        lines = [self.text.rstrip("\n")] if self.text else []
        for c in self.changes:
            if c.before is None:
                lines.append(f"+ {c.key}: {c.after!r}")
            elif c.after is None:
                lines.append(f"- {c.key}: {c.before!r}")
            else:
                lines.append(f"~ {c.key}: {c.before!r} -> {c.after!r}")
        return "\n".join(lines) if lines else f"{self.a} and {self.b} are identical"


def _body_lines(spec: PromptSpec) -> list[str]:
    if spec.template is not None:
        return spec.template.splitlines(keepends=True)
    lines: list[str] = []
    for i, message in enumerate(spec.messages or []):
        lines.append(f"--- message {i} ({message.role}) ---\n")
        lines.extend(
            line if line.endswith("\n") else line + "\n"
            for line in message.content.splitlines(keepends=True)
        )
    return lines


def _flat_changes(prefix: str, old: dict[str, Any], new: dict[str, Any]) -> list[FieldChange]:
    out = []
    for key in sorted(set(old) | set(new)):
        before, after = old.get(key), new.get(key)
        if before != after:
            out.append(FieldChange(key=f"{prefix}.{key}", before=before, after=after))
    return out


def diff_specs(old: PromptSpec, new: PromptSpec, *, a: str, b: str) -> PromptDiff:
    """Compare two specs; ``a`` and ``b`` label them in the output."""
    text = "".join(difflib.unified_diff(_body_lines(old), _body_lines(new), fromfile=a, tofile=b))
    o, n = old.canonical(), new.canonical()
    changes = []
    if o["description"] != n["description"]:
        changes.append(
            FieldChange(key="description", before=o["description"], after=n["description"])
        )
    changes += _flat_changes("variables", o["variables"], n["variables"])
    changes += _flat_changes("model", o["model"], n["model"])
    changes += _flat_changes("metadata", o["metadata"], n["metadata"])
    return PromptDiff(a=a, b=b, text=text, changes=changes)
