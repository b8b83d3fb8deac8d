"""Scorers: checks of an output, registered by name in :data:`SCORERS` (third-party ones through
the ``llmops.scorers`` entry-point group).

Semantics follow promptfoo's assertions of the same names (so its configs grade the same):
``contains`` is case-sensitive, ``icontains`` is not; ``contains-any``/``-all`` take a list or a
comma-separated string; ``equals`` with an object or list value compares parsed JSON; ``is-json``
needs the whole output to be JSON (optionally matching a schema given as ``value``);
``contains-json`` looks for a JSON object anywhere in it; any type prefixed ``not-`` inverts.

The LLM judge is an ordinary scorer that happens to call a model: ``llm-rubric`` and
``reference-graded`` (:data:`MODEL_GRADED`) are async scorers that ask the run's judge
(``ScoreContext.judge``, see :mod:`llmops.evals.judging`). :func:`score` runs any of them.
"""

from __future__ import annotations

import csv
import importlib
import importlib.util
import inspect
import json
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from llmops._plugins import Registry

__all__ = [
    "MODEL_GRADED",
    "SCORERS",
    "JudgeHook",
    "ScoreContext",
    "ScoreResult",
    "Scorer",
    "run_scorer",
    "score",
]


@dataclass(frozen=True, slots=True)
class ScoreResult:
    """One assertion's outcome. ``passed`` is None when the scorer itself failed (an error is
    neither a pass nor a fail)."""

    passed: bool | None
    score: float
    reason: str = ""
    details: dict[str, Any] | None = None
    """More to record with the assertion (a judge's samples and replies)."""

    def to_json(self) -> dict[str, Any]:
        """Plain data (``details`` merged in)."""
        return {
            "passed": self.passed, "score": self.score, "reason": self.reason,
            **(self.details or {}),
        }  # fmt: skip


class JudgeHook(Protocol):
    """How a model-graded scorer asks the run's judge: ``kind`` is ``rubric`` or
    ``reference``, ``value`` the assertion's value, ``threshold`` its own (or None)."""

    def __call__(
        self, kind: str, value: Any, output: str, *, threshold: float | None
    ) -> Awaitable[ScoreResult]: ...


@dataclass(slots=True)
class ScoreContext:
    """What a scorer may look at besides the output."""

    vars: dict[str, Any] = field(default_factory=dict)
    expected: str | None = None
    latency_s: float = 0.0
    cost: float = 0.0
    folder: Path | None = None
    """The suite's folder (for ``python`` scorers given as ``file.py:function``)."""
    judge: JudgeHook | None = None
    """The run's judge, for model-graded scorers (None: the suite has none)."""
    threshold: float | None = None
    """The assertion's own threshold (model-graded scores pass at or above it)."""


Scorer = Callable[[str, Any, ScoreContext], ScoreResult | Awaitable[ScoreResult]]


def _ok(passed: bool, reason: str) -> ScoreResult:
    return ScoreResult(passed, 1.0 if passed else 0.0, "" if passed else reason)


def _text(value: Any, kind: str) -> str:
    if isinstance(value, bool) or value is None or value == "":
        raise ValueError(f"{kind!r} needs a string or number value")
    if isinstance(value, int | float | str):
        return str(value)
    raise ValueError(f"{kind!r} needs a string or number value, got {type(value).__name__}")


def _values(value: Any, kind: str) -> list[str]:
    if isinstance(value, str):
        value = [v.strip() for v in next(csv.reader([value], skipinitialspace=True))]
    if not isinstance(value, list) or not value:
        raise ValueError(f"{kind!r} needs a list of strings (or a comma-separated string)")
    return [str(v) for v in value]


def _equals(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    if isinstance(value, dict | list):
        try:
            return _ok(json.loads(output) == value, f"expected JSON equal to {json.dumps(value)}")
        except json.JSONDecodeError:
            return _ok(False, "output is not JSON")
    return _ok(output == _text(value, "equals"), f"expected exactly {value!r}")


def _contains(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    needle = _text(value, "contains")
    return _ok(needle in output, f"expected to contain {needle!r}")


def _icontains(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    needle = _text(value, "icontains")
    return _ok(needle.lower() in output.lower(), f"expected to contain {needle!r} (any case)")


def _contains_any(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    needles = _values(value, "contains-any")
    return _ok(any(n in output for n in needles), f"expected one of {needles}")


def _icontains_any(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    low = output.lower()
    needles = _values(value, "icontains-any")
    return _ok(any(n.lower() in low for n in needles), f"expected one of {needles} (any case)")


def _contains_all(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    missing = [n for n in _values(value, "contains-all") if n not in output]
    return _ok(not missing, f"missing {missing}")


def _icontains_all(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    low = output.lower()
    missing = [n for n in _values(value, "icontains-all") if n.lower() not in low]
    return _ok(not missing, f"missing {missing} (any case)")


def _regex(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    pattern = _text(value, "regex")
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"invalid regex {pattern!r}: {exc}") from None
    return _ok(compiled.search(output) is not None, f"no match for /{pattern}/")


def _starts_with(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    prefix = _text(value, "starts-with")
    return _ok(output.startswith(prefix), f"expected to start with {prefix!r}")


def _strict_json(text: str) -> Any:
    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


def _schema_check(data: Any, schema: Any) -> str | None:
    import jsonschema

    if isinstance(schema, str):
        from llmops._yamldoc import load_yaml

        schema = load_yaml(schema, what="json-schema value")
    try:
        jsonschema.validate(data, schema)
    except jsonschema.ValidationError as exc:
        return f"JSON does not match the schema: {exc.message}"
    except jsonschema.SchemaError as exc:
        raise ValueError(f"invalid JSON schema: {exc.message}") from None
    return None


def _is_json(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    try:
        data = _strict_json(output)
    except ValueError:
        return _ok(False, "output is not valid JSON")
    if value not in (None, ""):
        problem = _schema_check(data, value)
        if problem:
            return _ok(False, problem)
    return _ok(True, "")


def json_objects(text: str) -> list[Any]:
    """Every JSON object embedded in ``text``, in order (each ``{`` that starts one)."""
    decoder = json.JSONDecoder()
    found: list[Any] = []
    start = text.find("{")
    while start != -1:
        try:
            obj, end = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            start = text.find("{", start + 1)
            continue
        found.append(obj)
        start = text.find("{", end)
    return found


def _contains_json(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    objects = json_objects(output)
    if not objects:
        return _ok(False, "no JSON object in the output")
    if value in (None, ""):
        return _ok(True, "")
    problems = [_schema_check(o, value) for o in objects]
    return _ok(any(p is None for p in problems), next((p for p in problems if p), ""))


def _json_schema(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    if value in (None, ""):
        raise ValueError("'json-schema' needs a schema as its value")
    return _is_json(output, value, ctx)


def _bounds(value: Any, kind: str) -> tuple[float | None, float | None]:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return None, float(value)
    if isinstance(value, dict) and set(value) <= {"min", "max"} and value:
        return value.get("min"), value.get("max")
    raise ValueError(f"{kind!r} needs a number (the maximum) or {{min, max}}")


def _within(measured: float, value: Any, kind: str, unit: str) -> ScoreResult:
    low, high = _bounds(value, kind)
    ok = (low is None or measured >= low) and (high is None or measured <= high)
    return _ok(ok, f"{kind} {measured:g}{unit} outside [{low}, {high}]")


def _length(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    return _within(len(output), value, "length", " chars")


def _latency(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    return _within(ctx.latency_s * 1000, value, "latency", " ms")


def _cost(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    return _within(ctx.cost, value, "cost", " USD")


def _load_function(target: str, folder: Path | None) -> Callable[..., Any]:
    module_name, sep, func = target.rpartition(":")
    if not sep or not module_name or not func:
        raise ValueError(f"'python' needs 'module:function' or 'file.py:function', got {target!r}")
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_absolute() and folder is not None:
            path = folder / path
        spec = importlib.util.spec_from_file_location(f"llmops_scorer_{path.stem}", path)
        if spec is None or spec.loader is None or not path.is_file():
            raise ValueError(f"no scorer file {path}")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    fn = getattr(module, func, None)
    if not callable(fn):
        raise ValueError(f"{target!r} is not a function")
    return fn  # type: ignore[no-any-return]


def _python(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    """A Python function ``fn(output, context) -> bool | float | {pass, score, reason}``."""
    fn = _load_function(_text(value, "python"), ctx.folder)
    result = fn(output, {"vars": ctx.vars, "expected": ctx.expected})
    if isinstance(result, bool):
        return _ok(result, "the function returned False")
    if isinstance(result, int | float):
        return ScoreResult(float(result) >= 0.5, float(result), "")
    if isinstance(result, dict) and "pass" in result:
        passed = bool(result["pass"])
        score = float(result.get("score", 1.0 if passed else 0.0))
        return ScoreResult(passed, score, str(result.get("reason", "")))
    raise ValueError(f"{value!r} returned {type(result).__name__}; expected bool, number or dict")


async def _llm_rubric(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    """A judge grades the output against the rubric in ``value``."""
    if ctx.judge is None:
        raise ValueError("'llm-rubric' needs a judge: give the suite a judge.model")
    return await ctx.judge("rubric", value, output, threshold=ctx.threshold)


async def _reference_graded(output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    """A judge grades the output against the case's reference answer (or ``value``)."""
    if ctx.judge is None:
        raise ValueError("'reference-graded' needs a judge: give the suite a judge.model")
    return await ctx.judge("reference", value, output, threshold=ctx.threshold)


SCORERS: Registry[Scorer] = Registry("assertion type", group="llmops.scorers")
"""Every assertion type by name (``not-`` inverts any of them)."""
_BUILTIN: dict[str, Scorer] = {
    "equals": _equals, "contains": _contains, "icontains": _icontains,
    "contains-any": _contains_any, "icontains-any": _icontains_any,
    "contains-all": _contains_all, "icontains-all": _icontains_all, "regex": _regex,
    "starts-with": _starts_with, "is-json": _is_json, "contains-json": _contains_json,
    "json-schema": _json_schema, "length": _length, "latency": _latency, "cost": _cost,
    "python": _python, "llm-rubric": _llm_rubric, "reference-graded": _reference_graded,
}  # fmt: skip
for _name, _scorer in _BUILTIN.items():
    SCORERS.register(_name, _scorer)

MODEL_GRADED = frozenset({"llm-rubric", "reference-graded"})
"""The scorers that call the judge model."""


async def score(kind: str, output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    """Run any assertion (``not-`` inverts); a broken assertion is an error result."""
    inverse = kind.startswith("not-")
    base = kind.removeprefix("not-")
    scorer = SCORERS.get(base)
    try:
        outcome = scorer(output, value, ctx)
        result = await outcome if inspect.isawaitable(outcome) else outcome
    except Exception as exc:
        return ScoreResult(None, 0.0, f"{kind}: {exc}")
    return _inverted(result, base) if inverse else result


def _inverted(result: ScoreResult, base: str) -> ScoreResult:
    if result.passed is None:
        return result
    passed = not result.passed
    # A judge's reason says why; a deterministic check's says what was expected.
    reason = result.reason if base in MODEL_GRADED else "" if passed else f"expected not: {base}"
    return ScoreResult(passed, 1.0 - result.score, reason, result.details)


def run_scorer(kind: str, output: str, value: Any, ctx: ScoreContext) -> ScoreResult:
    """Run a deterministic assertion (``not-`` inverts); a broken assertion is an error result.

    Raises:
        ValueError: ``kind`` is model-graded (use :func:`score` in a run) or unknown.
    """
    base = kind.removeprefix("not-")
    if base in MODEL_GRADED or inspect.iscoroutinefunction(SCORERS.get(base)):
        raise ValueError(f"{kind!r} is model-graded: score it with `score` in a run")
    coroutine = score(kind, output, value, ctx)
    try:
        coroutine.send(None)
    except StopIteration as done:
        result: ScoreResult = done.value
        return result
    coroutine.close()  # pragma: no cover - a deterministic scorer never awaits
    raise AssertionError("a deterministic scorer awaited")
