"""Deterministic scorers: promptfoo's semantics for the same names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from llmops.evals.scorers import MODEL_GRADED, SCORERS, ScoreContext, run_scorer

CASES: list[tuple[str, Any, str, bool]] = [
    ("equals", "Paris", "Paris", True),
    ("equals", "Paris", "Paris ", False),
    ("equals", {"a": 1}, '{"a": 1}', True),
    ("equals", {"a": 1}, "not json", False),
    ("contains", "Par", "Paris", True),
    ("contains", "par", "Paris", False),
    ("icontains", "PAR", "Paris", True),
    ("contains-any", ["Rome", "Paris"], "Paris", True),
    ("contains-any", "Rome, Paris", "Paris", True),
    ("contains-any", ["Rome"], "Paris", False),
    ("icontains-any", ["ROME", "PARIS"], "paris", True),
    ("contains-all", ["a", "b"], "ab", True),
    ("contains-all", "a,c", "ab", False),
    ("icontains-all", ["A", "B"], "ab", True),
    ("regex", r"\d{3}", "call 555 now", True),
    ("regex", r"^\d+$", "12a", False),
    ("starts-with", "Arr", "Arr, matey", True),
    ("starts-with", "arr", "Arr, matey", False),
    ("is-json", None, '{"a": [1, 2]}', True),
    ("is-json", None, "3", True),
    ("is-json", None, "NaN", False),
    ("is-json", None, "{'a': 1}", False),
    ("is-json", {"type": "object", "required": ["a"]}, '{"b": 1}', False),
    ("contains-json", None, 'Sure: {"a": {"b": 2}} done', True),
    ("contains-json", None, "no json {here", False),
    ("contains-json", {"type": "object", "required": ["b"]}, '{"a":1} then {"b":2}', True),
    ("json-schema", {"type": "array"}, "[1]", True),
    ("length", {"min": 2, "max": 4}, "abc", True),
    ("length", 2, "abc", False),
    ("python", "tests.evals.test_scorers:ends_with_period", "Done.", True),
    ("python", "tests.evals.test_scorers:ends_with_period", "Done", False),
]


def ends_with_period(output: str, context: dict[str, Any]) -> bool:
    return output.endswith(".")


@pytest.mark.parametrize(("kind", "value", "output", "expected"), CASES)
def test_scorer(kind: str, value: Any, output: str, expected: bool) -> None:
    result = run_scorer(kind, output, value, ScoreContext())
    assert result.passed is expected, result.reason
    assert result.score == (1.0 if expected else 0.0)


@pytest.mark.parametrize("kind", sorted(k for k in SCORERS if k not in MODEL_GRADED))
def test_every_deterministic_scorer_is_covered_and_invertible(kind: str) -> None:
    covered = [c for c in CASES if c[0] == kind]
    if kind in ("latency", "cost"):
        ctx = ScoreContext(latency_s=0.2, cost=0.5)
        assert run_scorer(kind, "x", 1000 if kind == "latency" else 1.0, ctx).passed is True
        assert run_scorer(f"not-{kind}", "x", 100 if kind == "latency" else 0.1, ctx).passed
        return
    assert covered, f"no test case for {kind}"
    k, value, output, expected = covered[0]
    assert run_scorer(f"not-{k}", output, value, ScoreContext()).passed is (not expected)


@pytest.mark.parametrize(
    ("kind", "value", "match"),
    [
        ("regex", "(", "invalid regex"),
        ("contains", None, "needs a string or number"),
        ("contains-any", 5, "needs a list"),
        ("length", "long", "needs a number"),
        ("python", "no_colon", "module:function"),
        ("is-json", {"type": 12}, "invalid JSON schema"),
    ],
)
def test_a_broken_assertion_is_an_error_not_a_fail(kind: str, value: Any, match: str) -> None:
    result = run_scorer(kind, '{"a": 1}', value, ScoreContext())
    assert result.passed is None and match in result.reason


def test_python_scorer_from_a_file_next_to_the_suite(tmp_path: Path) -> None:
    (tmp_path / "checks.py").write_text(
        "def score(output, context):\n"
        "    return {'pass': context['vars']['x'] in output, 'score': 0.7, 'reason': 'r'}\n"
    )
    ctx = ScoreContext(vars={"x": "yes"}, folder=tmp_path)
    result = run_scorer("python", "yes indeed", "checks.py:score", ctx)
    assert (result.passed, result.score, result.reason) == (True, 0.7, "r")


def test_model_graded_types_are_registered() -> None:
    assert {"llm-rubric", "reference-graded"} == MODEL_GRADED
