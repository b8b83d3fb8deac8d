"""Suite validation: every problem at once with lines, and the contract's keys."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops.errors import SuiteError
from llmops.evals.suite import iter_cases, load_suite, parse_suite

REPO = Path(__file__).resolve().parents[2]
TARGET = """targets:
  - name: t
    prompt: qa@production
    model: {provider: openai, name: m, api_base: "http://127.0.0.1:9/v1"}
"""


def test_the_contract_keys_parse() -> None:
    loaded = parse_suite(
        TARGET
        + """cases:
  - vars: {q: hi}
    assert: [{type: icontains, value: hi}]
judge:
  model: {provider: openai, name: j, api_base: "http://127.0.0.1:9/v1"}
  prompt: my-judge@2
  pattern: "VERDICT: (PASS|FAIL)"
"""
    )
    suite = loaded.suite
    assert suite.targets[0].prompt == "qa@production"
    assert suite.cases[0].assert_[0].type == "icontains"
    assert suite.judge is not None and suite.judge.pattern == "VERDICT: (PASS|FAIL)"
    assert loaded.digest.startswith("blake3:") and loaded.case_lines == (6,)


def test_inline_messages_in_either_shape() -> None:
    for prompt in (
        '[{role: user, content: "Q {{ q }}"}]',
        '{messages: [{role: user, content: "Q"}]}',
    ):
        suite = parse_suite(f"""targets:
  - name: t
    prompt: {prompt}
    model: {{provider: openai, name: m, api_base: "http://x/v1"}}
cases: [{{vars: {{q: 1}}}}]
""").suite
        assert isinstance(suite.targets[0].prompt, list)


def test_every_problem_is_reported_with_lines() -> None:
    text = (
        TARGET
        + """cases:
  - vars: {q: hi}
    assert: [{type: icontain, value: hi}]
concurency: 4
"""
    )
    with pytest.raises(SuiteError) as info:
        parse_suite(text, path=Path("s.yaml"))
    message = str(info.value)
    assert "unknown assertion type 'icontain' (did you mean 'icontains'?)" in message
    assert "line 8: unknown field 'concurency' (did you mean 'concurrency'?)" in message


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("targets: [", "malformed YAML"),
        ("- a\n", "expected a mapping with 'targets' and 'cases'"),
        (TARGET, "the suite has no cases"),
        (
            TARGET + "cases: [{vars: {}, assert: [{type: llm-rubric, value: x}]}]\n",
            "need judge.model",
        ),
        (
            TARGET + "cases: [{vars: {}}]\njudge: {mode: pairwise, model: {provider: openai, "
            "name: j, api_base: 'http://x/v1'}}\n",
            "compares exactly 2 targets",
        ),
        (
            "targets:\n  - name: t\n    prompt: p\n    model: {provider: openai, name: m}\ncases: [{}]\n",
            "needs api_base",
        ),
        (
            TARGET + TARGET.replace("targets:\n", "") + "cases: [{}]\n",
            "target names must be unique",
        ),
    ],
)
def test_malformed_suites(text: str, match: str) -> None:
    with pytest.raises(SuiteError, match=match):
        parse_suite(text)


def test_example_suites_validate() -> None:
    suites = sorted((REPO / "evals").glob("*.yaml"))
    assert suites, "evals/ ships example suites"
    for path in suites:
        loaded = load_suite(path)
        assert sum(1 for _ in iter_cases(loaded)) > 0


@pytest.mark.parametrize(
    ("model", "match"),
    [
        (
            '{provider: openai, name: m, api_base: "http://user:sk-live-key@127.0.0.1:9/v1"}',
            "api_base carries credentials",
        ),
        (
            '{provider: openai, name: m, api_base: "http://127.0.0.1:9/v1", extra: {api_key: sk-x}}',
            "extra.api_key holds a secret",
        ),
    ],
)
def test_keys_in_suites_are_refused_with_a_pointer_to_api_key_env(
    tmp_path: Path, model: str, match: str
) -> None:
    from llmops.evals.suite import load_suite

    path = tmp_path / "s.yaml"
    path.write_text(
        f"targets:\n  - name: t\n    prompt: [{{role: user, content: hi}}]\n    model: {model}\n"
        "cases:\n  - vars: {}\n",
        encoding="utf-8",
    )
    with pytest.raises(SuiteError, match=match) as caught:
        load_suite(path)
    assert "api_key_env" in str(caught.value) and "sk-live-key" not in str(caught.value)
