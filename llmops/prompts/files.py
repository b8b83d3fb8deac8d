"""Prompt files: YAML in ``prompts/`` to :class:`PromptSpec` and back.

Errors name the file, line and column, suggest the field that was probably meant, and report every
problem of a file at once.
"""

from __future__ import annotations

import difflib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from llmops.errors import InputError, PromptFileError
from llmops.prompts.spec import FORMAT_VERSION, Message, ModelParams, PromptSpec, Variable

__all__ = [
    "MAX_PROMPT_FILE_BYTES",
    "dump_prompt_file",
    "find_prompt_files",
    "load_prompt_file",
    "parse_prompt_yaml",
    "write_prompt_file",
]

MAX_PROMPT_FILE_BYTES = 1_000_000
_SUFFIXES = (".yaml", ".yml")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses duplicate keys instead of silently keeping the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _node_at(root: yaml.Node | None, loc: tuple[int | str, ...], *, key: bool) -> yaml.Node | None:
    """The YAML node at a pydantic error location: the key node of the last part when ``key``
    (unknown fields), else the value node; the deepest node present when the path stops early."""
    node = root
    for i, part in enumerate(loc):
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == part:
                    if key and i == len(loc) - 1:
                        return key_node  # type: ignore[no-any-return]
                    node = value_node
                    break
            else:
                return node
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node
            node = node.value[part]
        else:
            return node
    return node


_MODELS_BY_FIELD: dict[str, type[BaseModel]] = {
    "variables": Variable,
    "messages": Message,
    "model": ModelParams,
}


def _suggest(loc: tuple[int | str, ...], unknown: str) -> str | None:
    model: type[BaseModel] = PromptSpec
    if loc and loc[0] in _MODELS_BY_FIELD:
        model = _MODELS_BY_FIELD[str(loc[0])]
    options = [*model.model_fields]
    if model is PromptSpec:
        options.append("format_version")
    match = difflib.get_close_matches(unknown, options, n=1, cutoff=0.6)
    if match:
        return f"did you mean {match[0]!r}?"
    if model is ModelParams:
        return "put provider-specific parameters under 'model.extra'"
    return f"allowed fields: {', '.join(options)}"


def _problems(
    exc: ValidationError, root: yaml.Node | None
) -> list[tuple[int | None, int | None, str]]:
    found: list[tuple[int | None, int | None, str]] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        # pydantic nests union/dict members in the location; keep the parts present in the YAML
        node = _node_at(root, loc, key=err["type"] == "extra_forbidden")
        field = ".".join(str(p) for p in loc) or "(top level)"
        if err["type"] == "extra_forbidden":
            message = f"unknown field {field!r}"
            hint = _suggest(loc[:-1] if len(loc) > 1 else (), str(loc[-1]))
            if hint:
                message += f" ({hint})"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            message = f"{field}: {msg}" if loc else msg
        line = node.start_mark.line + 1 if node is not None else None
        column = node.start_mark.column + 1 if node is not None else None
        found.append((line, column, message))
    return found


def parse_prompt_yaml(text: str, *, path: str = "<prompt>") -> PromptSpec:
    """Parse prompt YAML text into a validated spec.

    Raises:
        PromptFileError: The YAML is malformed or the content invalid; every problem is listed,
            the first with its line and column.
    """
    try:
        root = yaml.compose(text, Loader=_UniqueKeyLoader)
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise PromptFileError(
            f"malformed YAML: {exc.problem or exc.context}",
            path=path,
            line=mark.line + 1 if mark else None,
            column=mark.column + 1 if mark else None,
            hint="fix the YAML syntax",
        ) from None
    except yaml.YAMLError as exc:
        raise PromptFileError(f"malformed YAML: {exc}", path=path) from None
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
    try:
        return PromptSpec.model_validate(data)
    except ValidationError as exc:
        problems = sorted(_problems(exc, root), key=lambda p: (p[0] or 0, p[1] or 0))
        line, column, first = problems[0]
        rest = [f"line {ln}: {msg}" if ln is not None else msg for ln, _, msg in problems[1:]]
        message = first if not rest else f"{first}; also {'; '.join(rest)}"
        raise PromptFileError(message, path=path, line=line, column=column) from None
    except InputError as exc:
        # Template syntax errors and bad names surface from validators as llmops errors.
        node = _node_at(root, ("name",), key=False) if "name" in exc.message else None
        raise PromptFileError(
            exc.message,
            path=path,
            line=node.start_mark.line + 1 if node is not None else None,
            hint=exc.hint,
        ) from None


def load_prompt_file(path: str | os.PathLike[str]) -> PromptSpec:
    """Read and validate one prompt file.

    Raises:
        PromptFileError: The file is missing, too large, not UTF-8, or invalid.
    """
    p = Path(path)
    try:
        size = p.stat().st_size
        if size > MAX_PROMPT_FILE_BYTES:
            raise PromptFileError(
                f"file is {size} bytes, over the limit of {MAX_PROMPT_FILE_BYTES}",
                path=str(p),
                hint="move long text into variables",
            )
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise PromptFileError("no such file", path=str(p), hint="check the path") from None
    except IsADirectoryError:
        raise PromptFileError("is a directory, expected a file", path=str(p)) from None
    except UnicodeDecodeError as exc:
        raise PromptFileError(
            f"not valid UTF-8 at byte {exc.start}", path=str(p), hint="save the file as UTF-8"
        ) from None
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
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(dump_prompt_file(spec))
            fh.flush()
            os.fsync(fh.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return target
