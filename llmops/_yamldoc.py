"""YAML documents validated against pydantic models, with line numbers in every problem.

Prompt files, recipes and eval suites share this: parse safely (duplicate keys refused), validate,
and report *all* problems at once, each at the line and column of the YAML node it concerns, with
"did you mean" suggestions for unknown keys.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from llmops.errors import DocumentError, InputError

__all__ = [
    "Problem",
    "YamlSyntaxError",
    "load_yaml",
    "node_at",
    "parse_yaml",
    "problems",
    "read_document",
    "summarize",
]


MAX_DEPTH = 64
"""Deepest nesting of collections a document may have."""
MAX_INT_DIGITS = 1000
"""Longest integer literal a document may hold (Python refuses past 4300 digits anyway)."""
_SURROGATE = re.compile("[\ud800-\udfff]")


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader hardened for documents from strangers: duplicate keys, aliases (the "billion
    laughs" expansion), deep nesting, huge integers and lone surrogates are refused at their
    line instead of being expanded, recursed into or failing later."""

    _depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        event: Any = self.peek_event()  # type: ignore[no-untyped-call]
        mark: Any = event.start_mark
        if isinstance(event, yaml.AliasEvent):
            raise yaml.composer.ComposerError(
                None, None, f"YAML aliases (*{event.anchor}) are not allowed: write the value out",
                mark,
            )  # fmt: skip
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested more than {MAX_DEPTH} levels deep", mark
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key (a list or mapping): refused below
                duplicate = False
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r}", key_node.start_mark
                )
            if not isinstance(key, list | dict):
                seen.add(key)
        return super().construct_mapping(node, deep=deep)

    def _int(self, node: yaml.ScalarNode) -> Any:
        if len(str(node.value)) > MAX_INT_DIGITS:
            raise yaml.constructor.ConstructorError(
                None, None, f"integer of {len(node.value)} digits is too large", node.start_mark
            )
        return self.construct_yaml_int(node)

    def _text(self, node: yaml.ScalarNode) -> Any:
        return self.construct_scalar(node)

    def _str(self, node: yaml.ScalarNode) -> Any:
        value = self.construct_yaml_str(node)
        if isinstance(value, str) and _SURROGATE.search(value):
            raise yaml.constructor.ConstructorError(
                None,
                None,
                "text holds a lone surrogate escape (e.g. \\ud800), which is not valid Unicode",
                node.start_mark,
            )
        return value


_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:int", _UniqueKeyLoader._int)
# YAML 1.1 turns 2024-01-01 into a date object that JSON (and so the registry) cannot hold;
# keep the text, as YAML 1.2 and JSON do.
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", _UniqueKeyLoader._text)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:str", _UniqueKeyLoader._str)


@dataclass(frozen=True, slots=True)
class Problem:
    """One problem of a document, where it is."""

    line: int | None
    column: int | None
    message: str


class YamlSyntaxError(Exception):
    """The text is not valid YAML (carries the position of the first problem)."""

    def __init__(self, problem: Problem) -> None:
        self.problem = problem
        super().__init__(problem.message)


def read_document(
    path: Path, error: type[DocumentError], *, max_bytes: int, what: str, too_big_hint: str
) -> str:
    """The UTF-8 text of a document file, or ``error`` saying why it cannot be read."""
    where = str(path)
    if path.exists() and not path.is_dir() and not path.is_file():
        # A pipe or a device (/dev/zero) would block or never end: documents are files.
        raise error(f"is not a regular file, expected a {what}", path=where,
                    hint="point at a file (not a pipe, socket or device)")  # fmt: skip
    try:
        size = path.stat().st_size
        if size > max_bytes:
            raise error(f"file is {size} bytes, over the limit of {max_bytes}", path=where,
                        hint=too_big_hint)  # fmt: skip
        return path.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise error(f"no such {what}", path=where, hint="check the path") from None
    except IsADirectoryError:
        raise error(f"is a directory, expected a {what}", path=where) from None
    except UnicodeDecodeError as exc:
        raise error(
            f"not valid UTF-8 at byte {exc.start}", path=where, hint="save the file as UTF-8"
        ) from None


def parse_yaml(text: str) -> tuple[Any, yaml.Node | None]:
    """The data and the node tree of a YAML document (see :class:`_UniqueKeyLoader` for what
    is refused).

    Raises:
        YamlSyntaxError: The YAML is malformed or uses something refused.
    """
    try:
        loader = _UniqueKeyLoader(text)
        try:
            root = loader.get_single_node()
            data = loader.construct_document(root) if root is not None else None
        finally:
            loader.dispose()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlSyntaxError(
            Problem(
                mark.line + 1 if mark else None,
                mark.column + 1 if mark else None,
                f"malformed YAML: {exc.problem or exc.context}",
            )
        ) from None
    except (yaml.YAMLError, ValueError, RecursionError) as exc:
        raise YamlSyntaxError(Problem(None, None, f"malformed YAML: {exc}"[:300])) from None
    return data, root


def load_yaml(text: str, *, what: str) -> Any:
    """Plain data from a small YAML text (a ``--set`` value, a vars file), refusing what
    :func:`parse_yaml` refuses.

    Raises:
        InputError: The text is malformed or uses something refused; names ``what``.
    """
    try:
        return parse_yaml(text)[0]
    except YamlSyntaxError as exc:
        where = f" at line {exc.problem.line}" if exc.problem.line else ""
        raise InputError(f"{what}{where}: {exc.problem.message}") from None


def node_at(root: yaml.Node | None, loc: tuple[int | str, ...], *, key: bool) -> yaml.Node | None:
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


def _submodel(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model in an annotation: ``X``, ``X | None``, ``list[X]``, ``dict[str, X]``."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if isinstance(annotation, types.UnionType) or typing.get_origin(annotation) is not None:
        for arg in typing.get_args(annotation):
            found = _submodel(arg)
            if found is not None:
                return found
    return None


def model_at(model: type[BaseModel], loc: tuple[int | str, ...]) -> type[BaseModel]:
    """The model that owns the fields at ``loc`` (list indexes and dict keys are skipped)."""
    current = model
    for part in loc:
        field = current.model_fields.get(str(part)) if isinstance(part, str) else None
        if field is None:
            continue
        inner = _submodel(field.annotation)
        if inner is None:
            break
        current = inner
    return current


def _suggest(model: type[BaseModel], unknown: str, extra_options: tuple[str, ...]) -> str:
    options = [*model.model_fields, *extra_options]
    match = difflib.get_close_matches(unknown, options, n=1, cutoff=0.6)
    if match:
        return f"did you mean {match[0]!r}?"
    return f"allowed fields: {', '.join(options)}"


def problems(
    exc: ValidationError,
    root: yaml.Node | None,
    model: type[BaseModel],
    *,
    hint_for_unknown: Callable[[type[BaseModel], str], str | None] | None = None,
    top_level_extra: tuple[str, ...] = (),
) -> list[Problem]:
    """Every validation error as a :class:`Problem` at its YAML position, sorted by line."""
    found: list[Problem] = []
    for err in exc.errors():
        loc = tuple(err["loc"])
        unknown = err["type"] == "extra_forbidden"
        node = node_at(root, loc, key=unknown)
        field = ".".join(str(p) for p in loc) or "(top level)"
        if unknown:
            owner = model_at(model, loc[:-1])
            extra = top_level_extra if owner is model else ()
            hint = _suggest(owner, str(loc[-1]), extra)
            if hint.startswith("allowed") and hint_for_unknown is not None:
                hint = hint_for_unknown(owner, str(loc[-1])) or hint
            message = f"unknown field {field!r} ({hint})"
        else:
            msg = str(err["msg"]).removeprefix("Value error, ")
            message = f"{field}: {msg}" if loc else msg
        line = node.start_mark.line + 1 if node is not None else None
        column = node.start_mark.column + 1 if node is not None else None
        found.append(Problem(line, column, message))
    return sorted(found, key=lambda p: (p.line or 0, p.column or 0))


def summarize(found: list[Problem]) -> tuple[Problem, str]:
    """The first problem and one message listing all of them (the rest with their lines)."""
    first = found[0]
    rest = [f"line {p.line}: {p.message}" if p.line is not None else p.message for p in found[1:]]
    more = len(rest) - _MAX_LISTED
    if more > 0:  # a file that is not what it should be (a symlink to /etc/...) lists forever
        rest = [*rest[:_MAX_LISTED], f"and {more} more problem(s)"]
    message = first.message if not rest else f"{first.message}; also {'; '.join(rest)}"
    return first, message


_MAX_LISTED = 9
"""Problems listed after the first one in one error line."""
