"""Versioned prompts: immutable versions, movable labels, sandboxed rendering, files and diffs."""

from llmops.prompts._sandbox import RenderLimits, render_template
from llmops.prompts.diff import FieldChange, PromptDiff
from llmops.prompts.files import dump_prompt_file, load_prompt_file, parse_prompt_yaml
from llmops.prompts.records import (
    HistoryEntry,
    LabelMove,
    PromptSummary,
    PromptVersion,
    PushResult,
    VersionInfo,
)
from llmops.prompts.registry import PromptRegistry, StalePromptWarning
from llmops.prompts.spec import Message, ModelParams, PromptSpec, RenderedPrompt, Variable

__all__ = [
    "FieldChange",
    "HistoryEntry",
    "LabelMove",
    "Message",
    "ModelParams",
    "PromptDiff",
    "PromptRegistry",
    "PromptSpec",
    "PromptSummary",
    "PromptVersion",
    "PushResult",
    "RenderLimits",
    "RenderedPrompt",
    "StalePromptWarning",
    "Variable",
    "VersionInfo",
    "dump_prompt_file",
    "load_prompt_file",
    "parse_prompt_yaml",
    "render_template",
]
