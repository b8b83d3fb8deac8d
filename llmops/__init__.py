"""llmops: a workbench for teams that customize large language models.

The public API is small and imports nothing heavy (no torch, transformers or litellm); names load
on first use so that ``import llmops`` and ``llmops --help`` stay fast::

    from llmops import Workspace
    ws = Workspace.open()
    ws.prompts.get("summarize", label="production").render(text="...")
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from llmops._version import __version__
from llmops.errors import LLMOpsError

if TYPE_CHECKING:
    from llmops.refs import Ref, parse_ref
    from llmops.workspace import Workspace

__all__ = ["LLMOpsError", "Ref", "Workspace", "__version__", "parse_ref"]

_LAZY = {"Ref": "llmops.refs", "parse_ref": "llmops.refs", "Workspace": "llmops.workspace"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmops' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
