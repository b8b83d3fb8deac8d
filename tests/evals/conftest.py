"""Eval fixtures: the library's offline OpenAI-compatible server and suite writers."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from llmops.evals.testing import Fault, MockServer

CAPITALS = {
    "France": "Paris",
    "Spain": "Madrid",
    "Italy": "Rome",
    "Japan": "Tokyo",
    "Kenya": "Nairobi",
    "Peru": "Lima",
    "Chile": "Santiago",
    "Egypt": "Cairo",
}


def user_text(body: dict[str, Any]) -> str:
    return str(body["messages"][-1]["content"])


def is_judge(body: dict[str, Any]) -> bool:
    return any(
        "impartial evaluator" in m["content"] for m in body["messages"] if m["role"] == "system"
    )


def answer_block(prompt: str, kind: str = "answer") -> str:
    """The content of the (escaped) untrusted block of the given kind."""
    match = re.search(
        rf'<untrusted_{kind} id="(\w+)">\n(.*)\n</untrusted_{kind} id="\1">', prompt, re.S
    )
    assert match, f"no untrusted {kind} block in {prompt!r}"
    return match.group(2)


def model(body: dict[str, Any]) -> str:
    """A scripted model: knows some capitals, answers others wrongly."""
    q = user_text(body)
    for country, city in CAPITALS.items():
        if country in q:
            return f"The capital of {country} is {city}." if country != "Peru" else "I am not sure."
    return "I do not know."


def judge(body: dict[str, Any]) -> str:
    """A scripted rubric judge: passes when the answer block names the reference city."""
    prompt = user_text(body)
    answer = answer_block(prompt)
    ok = any(city in answer for city in CAPITALS.values())
    return f"Checking.\n{json.dumps({'reason': 'named a capital' if ok else 'no capital', 'pass': ok, 'score': 1.0 if ok else 0.0})}"


def default_responder(body: dict[str, Any]) -> str | Fault:
    return judge(body) if is_judge(body) else model(body)


@pytest.fixture
def server() -> Iterator[MockServer]:
    with MockServer(default_responder) as s:
        yield s


@pytest.fixture
def make_server() -> Iterator[Callable[..., MockServer]]:
    started: list[MockServer] = []

    def make(
        respond: Callable[[dict[str, Any]], str | Fault] = default_responder, **kwargs: Any
    ) -> MockServer:
        s = MockServer(respond, **kwargs)
        s.start()
        started.append(s)
        return s

    yield make
    for s in started:
        s.stop()


def write_suite(
    root: Path,
    url: str,
    *,
    cases: str | None = None,
    extra: str = "",
    targets: str | None = None,
    name: str = "suite.yaml",
) -> Path:
    targets = (
        targets
        or f"""
  - name: model
    prompt: [{{role: user, content: "What is the capital of {{{{ country }}}}?"}}]
    model: {{provider: openai, name: scripted, api_base: "{url}"}}
"""
    )
    cases = (
        cases
        if cases is not None
        else """
  - vars: {country: France}
    assert: [{type: icontains, value: paris}]
  - vars: {country: Spain}
    assert: [{type: icontains, value: madrid}]
  - vars: {country: Peru}
    assert: [{type: icontains, value: lima}]
  - vars: {country: Japan}
    assert: [{type: contains, value: Tokyo}]
"""
    )
    text = f"targets:{targets}cases:{cases}{extra}"
    path = root / name
    path.write_text(text, encoding="utf-8")
    return path


def judged_suite(root: Path, url: str, *, rubric: str = "names the capital of France") -> Path:
    """A one-case suite (France) graded by ``llm-rubric`` with the server as its judge."""
    return write_suite(
        root,
        url,
        cases=f"""
  - vars: {{country: France}}
    assert: [{{type: llm-rubric, value: {rubric}}}]
""",
        extra=f'judge: {{model: {{provider: openai, name: judge, api_base: "{url}"}}}}\n',
    )
