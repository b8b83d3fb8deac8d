"""``pipeline.yaml``: named steps, what each needs, and its parameters, validated as one DAG.

    name: pirate
    steps:
      - {name: data, step: data, params: {path: recipes/data/pirate-chat.jsonl}}
      - {name: train, step: train, needs: [data], params: {recipe: recipes/sft-lora.yaml}}
      - {name: eval, step: eval, needs: [train], params: {suite: evals/pirate-style.yaml}}
      - name: report
        python: mypkg.steps:report        # any function: (ctx, **params) -> dict of outputs
        needs: [eval]
        params: {run: "${eval.run_id}"}  # an upstream step's output
        retries: 2

Every problem is reported at once, each at its line: unknown fields and step kinds, a step
without a kind or with two, duplicate names, ``needs`` naming no step, cycles, ``${step.key}``
references to steps not in ``needs``, parameters a kind does not take, and input files that do
not exist.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib.util
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from llmops._yamldoc import (
    Problem,
    YamlSyntaxError,
    node_at,
    parse_yaml,
    problems,
    read_document,
    summarize,
)
from llmops.errors import DocumentError

__all__ = ["Pipeline", "PipelineError", "StepSpec", "load_pipeline", "parse_pipeline"]

MAX_PIPELINE_BYTES = 1_000_000
NAME = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,63}")
PYTHON_REF = re.compile(r"[A-Za-z_][\w.]*:[A-Za-z_]\w*")
REFERENCE = re.compile(r"\$\{([A-Za-z][A-Za-z0-9_-]*)\.([A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*)\}")
"""``${step.output}`` (``${step.a.b}`` reaches into a mapping)."""


class PipelineError(DocumentError):
    """A pipeline file could not be parsed or validated."""

    default_where = "<pipeline>"


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TriggerSpec(_Spec):
    """``trigger:``: when ``llmops pipeline run --if-changed`` runs at all."""

    steps: list[str] = Field(default_factory=list)
    """Steps whose inputs changing (a new dataset fingerprint, a new prompt version) starts a
    run; empty: any step's."""
    min_new_rows: int = Field(default=0, ge=0)
    """For a ``data`` step among them: run only once this many rows were added since the last
    successful run."""


class StepSpec(_Spec):
    """One step: a built-in kind (``step:``) or a Python function (``python:``)."""

    name: str | None = None
    """Default: the kind's name."""
    step: str | None = None
    """``prompts``, ``data``, ``train``, ``eval`` or ``promote``."""
    python: str | None = None
    """``module:function``, called as ``function(ctx, **params)``; returns its outputs. Its
    key covers the module's file and the pipeline folder's modules it imports."""
    needs: list[str] = Field(default_factory=list)
    params: dict[str, Any] = Field(default_factory=dict)
    inputs: list[str] = Field(default_factory=list)
    """Files or folders (from the pipeline's folder) whose content keys a ``python`` step."""
    retries: int = Field(default=0, ge=0, le=10)
    """Times a failed attempt is tried again."""

    @field_validator("python")
    @classmethod
    def _python_ref(cls, value: str | None) -> str | None:
        if value is not None and not PYTHON_REF.fullmatch(value):
            raise ValueError(f"{value!r} is not module:function (e.g. mypkg.steps:report)")
        return value

    @property
    def kind(self) -> str:
        """``train`` ..., or ``python:module:function``."""
        return self.step if self.step is not None else f"python:{self.python}"

    @property
    def id(self) -> str:
        """The step's name."""
        return self.name or self.step or (self.python or "").rpartition(":")[2]


MAX_STEPS = 500


class PipelineSpec(_Spec):
    name: str | None = None
    """What runs are recorded under (default: the file's name without ``.yaml``)."""
    description: str = ""
    steps: list[StepSpec] = Field(min_length=1, max_length=MAX_STEPS)
    trigger: TriggerSpec | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str | None) -> str | None:
        if value is not None and not NAME.fullmatch(value):
            raise ValueError(
                f"pipeline name {value!r} must start with a letter and be up to 64 letters, "
                "digits, '-' or '_'"
            )
        return value


@dataclass(frozen=True)
class Pipeline:
    """A validated pipeline: its steps in a run order (dependencies first, else file order)."""

    spec: PipelineSpec
    path: Path
    order: tuple[str, ...]
    digest: str
    """``sha256:`` of the validated pipeline's canonical JSON."""

    @property
    def name(self) -> str:
        """The ``name:``, else the file's stem (``pipeline.yaml``: ``pipeline``)."""
        if self.spec.name:
            return self.spec.name
        stem = "".join(c if c.isalnum() or c in "-_" else "-" for c in self.path.stem)[:64]
        return stem if stem[:1].isalpha() else f"p-{stem}"[:64]

    @property
    def folder(self) -> Path:
        """Where relative paths in the pipeline start."""
        return self.path.parent

    def step(self, name: str) -> StepSpec:
        return next(s for s in self.spec.steps if s.id == name)

    def downstream(self, name: str) -> set[str]:
        """``name`` and every step that needs it, directly or not."""
        found = {name}
        for step in self.order:
            if any(n in found for n in self.step(step).needs):
                found.add(step)
        return found

    def upstream(self, name: str) -> set[str]:
        """Every step ``name`` needs, directly or not (not ``name`` itself)."""
        found: set[str] = set()
        todo = list(self.step(name).needs)
        while todo:
            n = todo.pop()
            if n not in found:
                found.add(n)
                todo.extend(self.step(n).needs)
        return found


def references(value: Any) -> set[str]:
    """Steps named by ``${step.output}`` anywhere in ``value``."""
    if isinstance(value, str):
        return {m.group(1) for m in REFERENCE.finditer(value)}
    if isinstance(value, dict):
        return set().union(*(references(v) for v in value.values())) if value else set()
    if isinstance(value, list):
        return set().union(*(references(v) for v in value)) if value else set()
    return set()


def value_problems(value: Any, where: str = "params") -> list[str]:
    """What in ``value`` is not plain JSON (binary, sets, dates, NaN) or is a malformed
    ``${...}`` reference."""
    import math

    found: list[str] = []
    if isinstance(value, str):
        if value.count("${") != len(REFERENCE.findall(value)):
            found.append(f"{where}: {value[:80]!r} has a '${{' that is not ${{step.output}}")
    elif isinstance(value, float) and not math.isfinite(value):
        found.append(f"{where}: {value} is not a JSON number")
    elif isinstance(value, dict):
        found = [p for k, v in value.items() for p in value_problems(v, f"{where}.{k}")]
    elif isinstance(value, list):
        found = [p for i, v in enumerate(value) for p in value_problems(v, f"{where}[{i}]")]
    elif not (isinstance(value, bool | int | float) or value is None):
        found.append(f"{where}: a {type(value).__name__} is not a JSON value (write it as text)")
    return found


def _order(steps: list[StepSpec]) -> tuple[list[str], list[str] | None]:
    """A run order (Kahn's algorithm, ties in file order) and a cycle if there is one."""
    import heapq

    names = list(dict.fromkeys(s.id for s in steps))  # a duplicate is reported elsewhere
    position = {n: i for i, n in enumerate(names)}
    needs: dict[str, set[str]] = {}
    for s in steps:  # the first step of a name counts
        needs.setdefault(s.id, {n for n in s.needs if n in position})
    waiting = {n: len(needs[n]) for n in names}
    users: dict[str, list[str]] = {n: [] for n in names}
    for n in names:
        for d in needs[n]:
            users[d].append(n)
    ready = [position[n] for n in names if not waiting[n]]
    heapq.heapify(ready)
    done: list[str] = []
    while ready:
        n = names[heapq.heappop(ready)]
        done.append(n)
        for u in users[n]:
            waiting[u] -= 1
            if not waiting[u]:
                heapq.heappush(ready, position[u])
    if len(done) == len(names):
        return done, None
    finished = set(done)
    left = [n for n in names if n not in finished]  # find one cycle among them to name it
    path, node = [left[0]], left[0]
    while True:
        node = next(d for d in needs[node] if d in left)
        if node in path:
            return done, [*path[path.index(node) :], node]
        path.append(node)


class _Found:
    """Problems collected at YAML positions."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.problems: list[Problem] = []

    def at(self, loc: tuple[int | str, ...], message: str) -> None:
        node = node_at(self.root, loc, key=False)
        line = node.start_mark.line + 1 if node is not None else None
        column = node.start_mark.column + 1 if node is not None else None
        self.problems.append(Problem(line, column, message))


def _graph_problems(
    steps: list[tuple[int, StepSpec]], names: list[str], trigger: TriggerSpec | None,
    root: Any, folder: Path,
) -> list[Problem]:  # fmt: skip
    """Problems between steps (names, needs, cycles, references) and of each valid step's
    parameters and files. ``steps`` are the steps that validated, with their positions;
    ``names`` every step's name (an invalid step still names itself)."""
    found = _Found(root)
    for i, s in steps:
        _step_problems(found, i, s, names, folder)
    _, cycle = _order([s for _, s in steps])
    if cycle:
        first = next(i for i, s in steps if s.id == cycle[0])
        found.at(("steps", first, "needs"), "the steps form a cycle: " + " -> ".join(cycle))
    if trigger is not None:
        for j, name in enumerate(trigger.steps):
            if name not in names:
                found.at(("trigger", "steps", j), f"trigger names {name!r}, which is no step")
    return found.problems


def _step_problems(found: _Found, i: int, s: StepSpec, names: list[str], folder: Path) -> None:
    from llmops.pipelines.steps import KINDS

    where = ("steps", i)
    if (s.step is None) == (s.python is None):
        found.at(where, f"step {i + 1} needs exactly one of 'step:' (a built-in kind) or 'python:'")
        return
    if not NAME.fullmatch(s.id):
        found.at((*where, "name"), f"step name {s.id!r} must be letters, digits, '-' or '_'")
    if names.count(s.id) > 1 and names.index(s.id) != i:
        found.at((*where, "name") if s.name else where,
                 f"step name {s.id!r} is used twice (give one a 'name:')")  # fmt: skip
    if s.step is not None and s.step not in KINDS:
        close = difflib.get_close_matches(s.step, KINDS, n=1)
        hint = f"did you mean {close[0]!r}?" if close else f"known: {', '.join(KINDS)}"
        found.at((*where, "step"), f"unknown step kind {s.step!r} ({hint}; or use python:)")
    _needs_problems(found, where, s, names)
    for message in value_problems(s.params):
        found.at((*where, "params"), f"step {s.id!r} {message}")
    if s.step in KINDS:
        _params_problems(found, where, s, folder)
    if s.python is not None:
        module, _, function = s.python.partition(":")
        spec = _find(module, folder)
        if spec is None:
            found.at((*where, "python"), f"step {s.id!r}: no module {module!r} to import")
        elif not _defines(spec, function):
            message = f"step {s.id!r}: module {module!r} defines no function {function!r}"
            found.at((*where, "python"), message)
    for j, path in enumerate(s.inputs):
        target = folder / path
        if not target.exists():
            found.at((*where, "inputs", j), f"step {s.id!r}: input {path!r} does not exist")
        elif not (target.is_file() or target.is_dir()):
            found.at((*where, "inputs", j),
                     f"step {s.id!r}: input {path!r} is not a file or folder")  # fmt: skip


def _needs_problems(found: _Found, where: tuple[str, int], s: StepSpec, names: list[str]) -> None:
    for j, need in enumerate(s.needs):
        if need == s.id:
            found.at((*where, "needs", j), f"step {s.id!r} needs itself")
        elif need not in names:
            close = difflib.get_close_matches(need, names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            found.at((*where, "needs", j), f"step {s.id!r} needs {need!r}, which is no step{hint}")
    for ref in sorted(references(s.params) - set(s.needs)):
        message = f"step {s.id!r} uses ${{{ref}...}} but does not list {ref!r} in needs"
        found.at((*where, "params"), message)


def _params_problems(found: _Found, where: tuple[str, int], s: StepSpec, folder: Path) -> None:
    """A built-in step's parameters against its kind's model, and its files."""
    from llmops.pipelines.steps import KINDS

    kind = KINDS[str(s.step)]
    try:
        params = kind.params.model_validate(s.params)
    except ValidationError as exc:
        node = node_at(found.root, (*where, "params"), key=False)
        if node is None:  # no params block at all: say so at the step
            found.at(where, f"step {s.id!r} needs params: {_required(kind.params)}")
            return
        for p in problems(exc, node, kind.params):
            found.problems.append(Problem(p.line, p.column, f"step {s.id!r} params: {p.message}"))
        return
    for loc, path in kind.files(params):
        if references(path):
            continue
        target = folder / path
        if not target.exists():
            found.at((*where, "params", *loc),
                     f"step {s.id!r}: {path!r} does not exist (from {folder})")  # fmt: skip
        elif not (target.is_file() or (kind.folders and target.is_dir())):
            what = "a file or folder" if kind.folders else "a regular file"
            found.at((*where, "params", *loc), f"step {s.id!r}: {path!r} is not {what}")


def _required(model: type[BaseModel]) -> str:
    return ", ".join(n for n, f in model.model_fields.items() if f.is_required())


def _defines(spec: Any, name: str) -> bool:
    """Whether a module's source defines ``name`` at its top level (read, not imported; a
    module without a readable source is given the benefit of the doubt)."""
    import ast

    origin = getattr(spec, "origin", None)
    if not origin or not str(origin).endswith(".py"):
        return True
    try:
        tree = ast.parse(Path(origin).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, ValueError):
        return True  # importing it says what is wrong
    for node in tree.body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            if node.name == name:
                return True
        elif isinstance(node, ast.Assign | ast.AnnAssign | ast.ImportFrom | ast.Import):
            targets = (
                [t for t in node.targets] if isinstance(node, ast.Assign)
                else [node.target] if isinstance(node, ast.AnnAssign)
                else []
            )  # fmt: skip
            if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                return True
            if isinstance(node, ast.ImportFrom | ast.Import) and any(
                (a.asname or a.name).split(".")[0] == name for a in node.names
            ):
                return True
    return False


def local_module(module: str, folder: Path) -> Path | None:
    """The file of ``module`` in the pipeline's folder (the user's own step code), or None."""
    base = folder.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def local_imports(module: str, folder: Path) -> dict[str, Path]:
    """The pipeline folder's modules that ``module`` imports, directly or through each other
    (read from their source, not imported): ``{name: file}``, ``module`` itself left out."""
    import ast

    found: dict[str, Path] = {}
    todo = [module]
    while todo:
        name = todo.pop()
        file = local_module(name, folder)
        if file is None or (name in found and name != module):
            continue
        if name != module:
            found[name] = file
        try:
            tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
            continue  # the import itself reports it
        package = name if file.name == "__init__.py" else name.rpartition(".")[0]
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                todo += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative: from the module's own package upwards
                    parts = package.split(".") if package else []
                    parts = parts[: len(parts) - (node.level - 1)] if node.level > 1 else parts
                    base = ".".join([*parts, *([base] if base else [])])
                if base:
                    todo.append(base)
                todo += [f"{base}.{a.name}" if base else a.name for a in node.names]
        todo = [t for t in todo if t and t != module and t not in found]
    return found


def _find(module: str, folder: Path) -> Any:
    """The module's spec: a file of the pipeline's folder first (whatever this process
    imported under that name before), else wherever Python finds it."""
    local = local_module(module, folder)
    if local is not None:
        return importlib.util.spec_from_file_location(module, local)
    return _find_installed(module, folder)


def _find_installed(module: str, folder: Path) -> Any:
    import sys

    sys.path.insert(0, str(folder))
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None
    finally:
        sys.path.remove(str(folder))


def parse_pipeline(text: str, *, path: str | Path = "pipeline.yaml") -> Pipeline:
    """Validate pipeline YAML text (relative paths from ``path``'s folder).

    Raises:
        PipelineError: Malformed or invalid; every problem is listed, the first with its line.
    """
    where = str(path)
    try:
        data, root = parse_yaml(text)
    except YamlSyntaxError as exc:
        p = exc.problem
        raise PipelineError(p.message, path=where, line=p.line, column=p.column) from None
    if not isinstance(data, dict):
        raise PipelineError("expected a mapping with 'steps'", path=where, line=1,
                            hint="see llmops/pipelines/spec.py for an example")  # fmt: skip
    folder = Path(path).resolve().parent
    found: list[Problem] = []
    try:
        spec: PipelineSpec | None = PipelineSpec.model_validate(data)
    except ValidationError as exc:
        found += problems(exc, root, PipelineSpec)
        spec = None
    listed = data.get("steps")
    raw: list[Any] = listed if isinstance(listed, list) else []
    steps: list[tuple[int, StepSpec]] = []
    names: list[str] = []
    for i, item in enumerate(raw):
        try:
            step = StepSpec.model_validate(item)
        except ValidationError:  # reported above; its name still counts for needs
            names.append(str(item.get("name") or item.get("step")) if isinstance(item, dict)
                         else "")  # fmt: skip
            continue
        steps.append((i, step))
        names.append(step.id)
    trigger = spec.trigger if spec is not None else None
    found += _graph_problems(steps, names, trigger, root, folder)
    if found or spec is None:
        first, message = summarize(sorted(found, key=lambda p: (p.line or 0, p.column or 0)))
        raise PipelineError(message, path=where, line=first.line, column=first.column)
    order, _ = _order(spec.steps)
    canonical = json.dumps(spec.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
    digest = "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()
    return Pipeline(spec=spec, path=Path(path).resolve(), order=tuple(order), digest=digest)


def load_pipeline(path: str | Path) -> Pipeline:
    """Read and validate a pipeline file.

    Raises:
        PipelineError: The file is missing, unreadable or invalid.
    """
    p = Path(path)
    text = read_document(
        p, PipelineError, max_bytes=MAX_PIPELINE_BYTES, what="pipeline file",
        too_big_hint="a pipeline is a short YAML file",
    )  # fmt: skip
    return parse_pipeline(text, path=p)
