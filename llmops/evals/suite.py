"""Eval suites: YAML files in ``evals/`` saying what to ask, whom, and how to score the answers.

A suite names one or more targets (a prompt, a registry reference or inline messages, times a
model), the cases (inline, or a JSONL/CSV ``cases_file``) with their variables and assertions,
default assertions for every case, judge settings and execution limits. It is validated before
anything runs, every problem at once with its line; cases are checked for the variables their
prompts need.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import blake3
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmops._yamldoc import (
    YamlSyntaxError,
    node_at,
    parse_yaml,
    problems,
    read_document,
    summarize,
)
from llmops.errors import SuiteError

__all__ = [
    "Assertion",
    "Case",
    "JudgeSpec",
    "LoadedSuite",
    "ModelSpec",
    "Suite",
    "Target",
    "iter_cases",
    "load_suite",
    "parse_suite",
]

MAX_SUITE_BYTES = 10_000_000


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ModelSpec(_Spec):
    """``model:``: which model answers, and how it is reached."""

    provider: str = "openai"
    """``openai`` (any OpenAI-compatible server), ``litellm``, local ``transformers``, or a
    provider a package registers (``llmops.providers`` entry points)."""
    name: str
    """Model name at the endpoint; for ``transformers`` an artifact reference or a folder."""
    api_base: str | None = None
    """Endpoint base URL, e.g. ``http://127.0.0.1:8000/v1``."""
    api_key_env: str | None = None
    """Name of the environment variable holding the API key (never the key itself)."""
    adapter: str | None = None
    """``transformers`` only: a LoRA adapter artifact reference or folder."""
    temperature: float = Field(default=0.0, ge=0, le=2)
    max_tokens: int = Field(default=256, ge=1)
    seed: int | None = None
    cost_per_1k_input: float = Field(default=0.0, ge=0)
    """USD per 1,000 prompt tokens (litellm knows prices itself)."""
    cost_per_1k_output: float = Field(default=0.0, ge=0)
    rate_limit_rps: float | None = Field(default=None, gt=0)
    """Most requests per second to this endpoint and model, across the whole run."""
    extra: dict[str, Any] = Field(default_factory=dict)
    """More request fields passed through (``top_p``, ``stop`` ...)."""

    @field_validator("provider")
    @classmethod
    def _registered(cls, value: str) -> str:
        from llmops.evals.providers import PROVIDERS

        if value not in PROVIDERS:
            raise ValueError(PROVIDERS.unknown(value))
        return value

    @model_validator(mode="after")
    def _endpoint(self) -> ModelSpec:
        from llmops._redact import secret_fields, url_credentials

        where_keys_go = (
            "suites must not hold keys: put it in an environment variable and name the"
            " variable in api_key_env"
        )
        if self.api_base and url_credentials(self.api_base):
            raise ValueError(
                f"api_base carries credentials (user:key@ or a key in its query); {where_keys_go}"
            )
        secrets = secret_fields(self.extra, prefix="extra")
        if secrets:
            raise ValueError(f"{', '.join(secrets)} holds a secret; {where_keys_go}")
        if self.provider == "openai" and not self.api_base:
            raise ValueError("provider 'openai' needs api_base (e.g. http://127.0.0.1:8000/v1)")
        if self.adapter and self.provider != "transformers":
            raise ValueError("adapter works with provider 'transformers' only")
        return self


def _unwrap_messages(cls: Any, value: Any) -> Any:
    """An inline prompt may be written ``{messages: [...]}`` as in a prompt file."""
    if isinstance(value, dict) and set(value) == {"messages"}:
        return value["messages"]
    return value


class Message(_Spec):
    """One message of an inline prompt (a Jinja template over the case's variables)."""

    role: Literal["system", "user", "assistant"]
    content: str


class Assertion(_Spec):
    """``{type, value}``: one check of an output."""

    type: str
    """A scorer name (``icontains``, ``llm-rubric`` ...), optionally prefixed ``not-``."""
    value: Any = None
    weight: float = Field(default=1.0, ge=0)
    threshold: float | None = Field(default=None, ge=0, le=1)
    """Model-graded scores pass at or above this (default: the judge's threshold)."""

    @field_validator("type")
    @classmethod
    def _known(cls, value: str) -> str:
        from llmops.evals.scorers import SCORERS

        base = value.removeprefix("not-")
        if base not in SCORERS:
            raise ValueError(SCORERS.unknown(base).replace(repr(base), repr(value), 1))
        return value


class Case(_Spec):
    """One test case."""

    id: str | None = None
    description: str = ""
    vars: dict[str, Any] = Field(default_factory=dict)
    metadata: dict[str, Any] = Field(default_factory=dict)
    """What the case is about, for filtering and slicing results (promptfoo's ``metadata``):
    ``{topic: geography, tags: [easy, europe]}``; a list value matches any of its items."""
    assert_: list[Assertion] = Field(default_factory=list, alias="assert")
    expected: str | None = None
    """Reference answer, for reference-guided grading (``reference-graded``)."""
    human: str | None = None
    """A person's label for judge calibration: ``pass``/``fail``, or ``A``/``B``/``TIE``."""


class JudgeSpec(_Spec):
    """``judge:``: the model(s) grading answers, and how."""

    model: ModelSpec | None = None
    panel: list[ModelSpec] = Field(default_factory=list)
    """Several judges; their verdicts are aggregated."""
    aggregate: Literal["majority", "mean"] = "majority"
    prompt: str | list[Message] | None = None
    """A judge prompt: a registry reference, or inline messages (a list, or ``{messages: ...}``)
    as a target's prompt may be; default: llmops' built-in prompts."""
    pattern: str | None = None
    """A regex whose last match carries the verdict (group 1, or the whole match)."""
    field: str | None = None
    """The JSON field carrying the verdict (default ``pass``, or ``verdict`` for pairwise)."""
    mode: Literal["single", "pairwise"] = "single"
    method: Literal["generate", "likelihood"] = "generate"
    """``generate``: the judge writes a reply with its verdict, which is parsed. ``likelihood``:
    nothing is generated; the judge's probability of each verdict word (PASS/FAIL, or A/B/TIE)
    as its reply is the verdict, and P(PASS) the score. A small local model can follow the
    latter where it cannot write a verdict (providers ``transformers``, which scores each
    whole word, or ``openai`` with a server that sends ``top_logprobs``, which scores the
    first token). A custom ``prompt`` must ask for the bare word."""
    rubric: str = "The answer is correct, relevant and follows the instructions."
    """What pairwise judging compares on, and the rubric of ``llm-rubric`` without a value."""
    epochs: int = Field(default=1, ge=1, le=20)
    """Repeated judge samples per verdict, to measure judge variance."""
    threshold: float = Field(default=0.5, ge=0, le=1)

    _messages_block = field_validator("prompt", mode="before")(_unwrap_messages)

    @model_validator(mode="after")
    def _likelihood(self) -> JudgeSpec:
        if self.method == "likelihood":
            if self.pattern is not None or self.field is not None:
                raise ValueError(
                    "judge.pattern and judge.field read a written reply; method 'likelihood'"
                    " writes none (drop them, or use method 'generate')"
                )
            if self.epochs > 1:
                raise ValueError(
                    "judge.epochs repeats sampled verdicts; a likelihood judge's is the same"
                    " every time (use epochs: 1, or method 'generate')"
                )
            for model in self.judges:
                if model.provider not in ("transformers", "openai"):
                    raise ValueError(
                        f"judge.method 'likelihood' needs token log-probabilities, which"
                        f" provider {model.provider!r} does not give here: use 'transformers'"
                        " or 'openai' (vLLM, OpenAI), or method 'generate'"
                    )
        return self

    @property
    def judges(self) -> list[ModelSpec]:
        """The panel, or the one model."""
        return list(self.panel) or ([self.model] if self.model else [])


class Target(_Spec):
    """A prompt times a model: one column of results."""

    name: str
    prompt: str | list[Message]
    """A prompt reference (``qa@production``) or inline messages."""
    model: ModelSpec
    model_version: str | None = None
    """The model version this target's model serves (``name@version``), for models reached
    over HTTP: recorded with the run as evidence for promoting that version."""

    _messages_block = field_validator("prompt", mode="before")(_unwrap_messages)


class Suite(_Spec):
    """An eval suite."""

    description: str = ""
    targets: list[Target] = Field(min_length=1)
    cases: list[Case] = Field(default_factory=list)
    cases_file: str | None = None
    """JSONL (case objects, or flat variable rows) or CSV (one column per variable)."""
    default_assert: list[Assertion] = Field(default_factory=list)
    """Assertions every case gets besides its own."""
    judge: JudgeSpec | None = None
    concurrency: int = Field(default=16, ge=1, le=1024)
    timeout_s: float = Field(default=60.0, gt=0)
    max_retries: int = Field(default=4, ge=0, le=20)

    @model_validator(mode="after")
    def _consistent(self) -> Suite:
        names = [t.name for t in self.targets]
        if len(set(names)) != len(names):
            raise ValueError(f"target names must be unique, got {names}")
        if not self.cases and not self.cases_file:
            raise ValueError("the suite has no cases: add 'cases' or 'cases_file'")
        from llmops.evals.scorers import MODEL_GRADED

        graded = any(
            a.type.removeprefix("not-") in MODEL_GRADED for c in self.cases for a in c.assert_
        )
        graded |= any(a.type.removeprefix("not-") in MODEL_GRADED for a in self.default_assert)
        judge = self.judge
        if (graded or (judge and judge.mode == "pairwise")) and not (judge and judge.judges):
            raise ValueError("model-graded assertions and pairwise judging need judge.model")
        if judge and judge.mode == "pairwise" and len(self.targets) != 2:
            raise ValueError(f"judge.mode 'pairwise' compares exactly 2 targets, got {len(names)}")
        return self

    def digest(self) -> str:
        """``blake3:`` of the suite's canonical JSON."""
        data = json.dumps(self.model_dump(mode="json", by_alias=True), sort_keys=True)
        return f"blake3:{blake3.blake3(data.encode()).hexdigest()}"


@dataclass(frozen=True, slots=True)
class LoadedSuite:
    """A validated suite and where it came from (for relative ``cases_file`` paths)."""

    suite: Suite
    path: Path | None
    name: str
    digest: str
    """Of the suite and the content of its cases file."""
    case_lines: tuple[int | None, ...]
    """YAML line of each inline case, for error messages."""

    @property
    def folder(self) -> Path:
        """Folder that relative paths are resolved against."""
        return self.path.parent if self.path else Path.cwd()


def load_suite(source: str | os.PathLike[str]) -> LoadedSuite:
    """Read and validate a suite file, or a promptfoo config (converted to a suite).

    Raises:
        SuiteError: The file is missing, malformed or invalid (every problem, with lines).
    """
    path = Path(source)
    text = read_document(
        path,
        SuiteError,
        max_bytes=MAX_SUITE_BYTES,
        what="suite file",
        too_big_hint="move cases into a cases_file",
    )
    return parse_suite(text, path=path)


def parse_suite(text: str, *, path: Path | None = None) -> LoadedSuite:
    """Validate suite YAML text (see :func:`load_suite`)."""
    where = str(path) if path else None
    try:
        data, root = parse_yaml(text)
    except YamlSyntaxError as exc:
        p = exc.problem
        raise SuiteError(p.message, path=where, line=p.line, column=p.column) from None
    if not isinstance(data, dict):
        raise SuiteError(
            f"expected a mapping with 'targets' and 'cases', got {type(data).__name__}",
            path=where,
            line=1,
        )
    if "targets" not in data and ("providers" in data or "tests" in data):
        from llmops.evals.promptfoo import convert_promptfoo

        folder = path.parent if path else Path.cwd()
        data, root = convert_promptfoo(data, folder=folder), None  # lines do not carry over
    try:
        suite = Suite.model_validate(data)
    except ValidationError as exc:
        first, message = summarize(problems(exc, root, Suite))
        raise SuiteError(message, path=where, line=first.line, column=first.column) from None
    lines = tuple(
        (node.start_mark.line + 1) if (node := node_at(root, ("cases", i), key=False)) else None
        for i in range(len(suite.cases))
    )
    name = path.stem if path else "suite"
    digest = blake3.blake3(suite.digest().encode())
    if suite.cases_file:
        with _cases_path(LoadedSuite(suite, path, name, "", lines)).open("rb") as f:
            while block := f.read(1 << 20):
                digest.update(block)
    return LoadedSuite(suite, path, name, f"blake3:{digest.hexdigest()}", lines)


def _cases_path(loaded: LoadedSuite) -> Path:
    assert loaded.suite.cases_file is not None
    file = Path(loaded.suite.cases_file)
    if not file.is_absolute():
        file = loaded.folder / file
    if not file.is_file():
        raise SuiteError(
            f"cases_file {loaded.suite.cases_file!r}: no such file (relative to {loaded.folder})",
            path=str(loaded.path) if loaded.path else None,
        )
    return file


@dataclass(frozen=True, slots=True)
class NumberedCase:
    """A case and where it is: ``where`` is ``suite.yaml:12`` or ``cases.jsonl:3``."""

    index: int
    case: Case
    where: str
    sample: int = 0
    """Which repeat of the case this is (``--repeat``): each one is a fresh model sample."""


def iter_cases(loaded: LoadedSuite) -> Iterator[NumberedCase]:
    """Every case in order (inline first, then the file's rows), read lazily.

    Raises:
        SuiteError: A row of the cases file is unreadable or invalid (names file and row).
    """
    suite_name = str(loaded.path) if loaded.path else "<suite>"
    index = 0
    for case, line in zip(loaded.suite.cases, loaded.case_lines, strict=True):
        yield NumberedCase(index, case, f"{suite_name}:{line}" if line else suite_name)
        index += 1
    if not loaded.suite.cases_file:
        return
    file = _cases_path(loaded)
    for number, data in _file_rows(file):
        where = f"{file}:{number}"
        try:
            case = Case.model_validate(data)
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"])
            raise SuiteError(f"{field}: {err['msg']}", path=str(file), line=number) from None
        yield NumberedCase(index, case, where)
        index += 1


_CASE_KEYS = frozenset({"vars", "assert", "expected", "id", "description", "human", "metadata"})


def _file_rows(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(line, case data)`` of a JSONL, CSV or Parquet cases file, read by the dataset reader:
    JSONL rows are case objects or flat variable rows; CSV follows promptfoo's convention."""
    from llmops.data.formats import BadRow, read_rows

    csv_file = file.suffix.lower() == ".csv"
    for item in read_rows(file):
        line = item.number + 1 if csv_file else item.number  # CSV: the header is line 1
        if isinstance(item, BadRow):
            raise SuiteError(f"not a JSON object: {item.message}", path=str(file), line=line)
        data = item.data
        if csv_file:
            yield line, _csv_case(data)
        elif "vars" in data or not data or set(data) <= _CASE_KEYS:
            yield line, data
        else:
            yield line, {"vars": data}


def _csv_case(record: dict[str, Any]) -> dict[str, Any]:
    """promptfoo's CSV convention: columns are variables; ``__expected`` is an assertion
    (``type: value``, or a plain value meaning ``equals``)."""
    variables = {k: v for k, v in record.items() if k and not k.startswith("__")}
    out: dict[str, Any] = {"vars": variables}
    expected = record.get("__expected")
    if expected:
        kind, sep, value = expected.partition(":")
        if sep and kind.strip().removeprefix("not-").replace("-", "").isalpha() and " " not in kind:
            out["assert"] = [{"type": kind.strip(), "value": value.strip()}]
        else:
            out["assert"] = [{"type": "equals", "value": expected}]
    return out
