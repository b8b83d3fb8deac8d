"""llmops: a workbench for teams that customize large language models.

The public API is small and imports nothing heavy (no torch, transformers or litellm)::

    from llmops import Workspace
    ws = Workspace.open()
    ws.prompts.get("summarize", label="production").render(text="...")
"""

from llmops._version import __version__
from llmops.errors import LLMOpsError
from llmops.refs import Ref, parse_ref
from llmops.workspace import Workspace

__all__ = ["LLMOpsError", "Ref", "Workspace", "__version__", "parse_ref"]
