"""Prompt files: YAML in ``prompts/`` to :class:`PromptSpec` and back.

Errors name the file, line and column, suggest the field that was probably meant, and report every
problem of a file at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from llmops._atomic import write_atomic
from llmops._yamldoc import (
    Problem,
    YamlSyntaxError,
    node_at,
    parse_yaml,
    problems,
    read_document,
    summarize,
)
from llmops.errors import InputError, PromptFileError
from llmops.prompts._sandbox import template_variables
from llmops.prompts.records import BUILTIN_PREFIX, is_builtin
from llmops.prompts.spec import FORMAT_VERSION, ModelParams, PromptSpec

__all__ = [
    "MAX_PROMPT_FILE_BYTES",
    "dump_prompt_file",
    "find_prompt_files",
    "load_prompt_file",
    "parse_prompt_yaml",
    "user_prompt",
    "write_prompt_file",
]

MAX_PROMPT_FILE_BYTES = 1_000_000
_SUFFIXES = (".yaml", ".yml")


def _hint_for_unknown(owner: type[BaseModel], unknown: str) -> str | None:
    if owner is ModelParams:
        return "put provider-specific parameters under 'model.extra'"
    return None


def parse_prompt_yaml(text: str, *, path: str = "<prompt>") -> PromptSpec:
    """Parse prompt YAML text into a validated spec.

    Raises:
        PromptFileError: The YAML is malformed or the content invalid; every problem is listed,
            the first with its line and column.
    """
    try:
        data, root = parse_yaml(text)
    except YamlSyntaxError as exc:
        p = exc.problem
        raise PromptFileError(
            p.message, path=path, line=p.line, column=p.column, hint="fix the YAML syntax"
        ) from None
    if not isinstance(data, dict):
        raise PromptFileError(
            f"expected a mapping with at least 'name' and 'messages' or 'template', got "
            f"{type(data).__name__}",
            path=path,
            line=1,
        )
    data = dict(data)
    version = data.pop("format_version", FORMAT_VERSION)
    if version != FORMAT_VERSION:
        raise PromptFileError(
            f"format_version {version!r} is not supported (this llmops reads {FORMAT_VERSION})",
            path=path,
            hint="upgrade llmops or rewrite the file",
        )
    templates = _template_problems(data, root)
    try:
        return PromptSpec.model_validate(data)
    except ValidationError as exc:
        found = problems(
            exc,
            root,
            PromptSpec,
            hint_for_unknown=_hint_for_unknown,
            top_level_extra=("format_version",),
        )
    except InputError as exc:  # a template's syntax, found by the validators
        found = [] if templates else [Problem(None, None, exc.one_line())]
    # Every problem at once: the schema's and each template's, in file order.
    found = sorted(found + templates, key=lambda p: (p.line is None, p.line or 0))
    first, message = summarize(found)
    raise PromptFileError(message, path=path, line=first.line, column=first.column)


def _template_problems(data: dict[str, Any], root: yaml.Node | None) -> list[Problem]:
    """Syntax errors of the file's templates, checked even when the schema has problems."""
    places: list[tuple[tuple[int | str, ...], Any, str]] = [
        (("template",), data.get("template"), "template")
    ]
    messages = data.get("messages")
    if isinstance(messages, list):
        places += [
            (("messages", i, "content"), m.get("content"), f"messages[{i}].content")
            for i, m in enumerate(messages)
            if isinstance(m, dict)
        ]
    found = []
    for loc, source, what in places:
        if not isinstance(source, str):
            continue
        try:
            template_variables(source, what=what)
        except InputError as exc:
            node = node_at(root, loc, key=False)
            line = node.start_mark.line + 1 if node is not None else None
            found.append(Problem(line, None, exc.one_line()))
    return found


def load_prompt_file(path: str | os.PathLike[str]) -> PromptSpec:
    """Read and validate one prompt file.

    Raises:
        PromptFileError: The file is missing, too large, not UTF-8, or invalid.
    """
    p = Path(path)
    text = read_document(
        p, PromptFileError, max_bytes=MAX_PROMPT_FILE_BYTES, what="file",
        too_big_hint="move long text into variables",
    )  # fmt: skip
    return parse_prompt_yaml(text, path=str(p))


def find_prompt_files(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Expand files and directories (searched recursively) into a sorted list of YAML files.

    Raises:
        PromptFileError: A path does not exist.
    """
    found: set[Path] = set()
    for raw in paths:
        p = Path(raw)
        if p.is_dir():
            found.update(f for f in p.rglob("*") if f.suffix in _SUFFIXES and f.is_file())
        elif p.is_file():
            found.add(p)
        else:
            raise PromptFileError("no such file or directory", path=str(p), hint="check the path")
    return sorted(found)


class _Dumper(yaml.SafeDumper):
    """Writes multi-line strings as literal blocks so prompt files stay readable in diffs."""


def _str_representer(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str_representer)


def dump_prompt_file(spec: PromptSpec) -> str:
    """YAML text for ``spec`` that :func:`parse_prompt_yaml` reads back to the same digest."""
    data: dict[str, Any] = {"format_version": FORMAT_VERSION, "name": spec.name}
    if spec.description:
        data["description"] = spec.description
    if spec.messages is not None:
        data["messages"] = [m.model_dump(mode="json") for m in spec.messages]
    else:
        data["template"] = spec.template
    variables: dict[str, Any] = {}
    for name, var in spec.variables.items():
        entry: dict[str, Any] = {"type": var.type}
        if not var.required:
            entry["required"] = False
            if var.default is not None:
                entry["default"] = var.default
        if var.description:
            entry["description"] = var.description
        variables[name] = entry
    if variables:
        data["variables"] = variables
    model = spec.model.model_dump(mode="json", exclude_none=True)
    if not model.get("extra"):
        model.pop("extra", None)
    if model:
        data["model"] = model
    if spec.metadata:
        data["metadata"] = spec.metadata
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=100)


def write_prompt_file(spec: PromptSpec, path: str | os.PathLike[str]) -> Path:
    """Write ``spec`` to ``path`` atomically (temporary file, fsync, rename)."""
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    return write_atomic(target, [dump_prompt_file(spec)])


def user_prompt(spec: PromptSpec, file: Path) -> PromptSpec:
    """A prompt file's spec, unless its name is one llmops keeps for its own prompts.

    Raises:
        PromptFileError: The name starts with ``llmops-``.
    """
    if is_builtin(spec.name):
        raise PromptFileError(
            f"prompt name {spec.name!r} starts with {BUILTIN_PREFIX!r}, which llmops keeps for"
            " its own prompts (hidden from listings and pulls)",
            path=str(file),
            hint="rename the prompt",
        )
    return spec
