"""Comparing two runs: paired statistics, and warnings when the runs are not like for like."""

from __future__ import annotations

from pathlib import Path

from llmops import Workspace
from llmops.evals.testing import MockServer
from tests.evals.conftest import write_suite


def test_like_for_like_runs_compare_without_warnings(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    suite = write_suite(tmp_path, server.url)
    a = ws.evaluate(suite).run
    b = ws.evaluate(suite, no_cache=True).run
    data = ws.evals.compare(a.run_id, b.run_id)
    assert data["warnings"] == []
    assert data["targets"][0]["n"] == 4 and data["changed"] == []


def test_another_suite_other_cases_and_another_model_are_warned_about(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    a = ws.evaluate(write_suite(tmp_path, server.url)).run
    other = tmp_path / "other"
    other.mkdir()
    cases = """
  - vars: {country: France}
    assert: [{type: icontains, value: paris}]
  - vars: {country: Kenya}
    assert: [{type: icontains, value: nairobi}]
"""
    with MockServer(lambda body: "The capital of France is Paris.") as second:
        b = ws.evaluate(write_suite(other, second.url, cases=cases)).run
    warnings = ws.evals.compare(a.run_id, b.run_id)["warnings"]
    text = "\n".join(warnings)
    assert "different suites or cases files" in text
    assert f"3 case(s) ran only in {a.run_id} and 1 only in {b.run_id}" in text
    assert "target 'model' ran another model" in text and second.url in text
    # Targets present in one run only are named too.
    targets = f"""
  - name: other
    prompt: [{{role: user, content: "Capital of {{{{ country }}}}?"}}]
    model: {{provider: openai, name: scripted, api_base: "{server.url}"}}
"""
    c = ws.evaluate(write_suite(tmp_path, server.url, targets=targets, name="c.yaml")).run
    text = "\n".join(ws.evals.compare(a.run_id, c.run_id)["warnings"])
    assert f"target 'model' ran only in {a.run_id}" in text
    assert f"target 'other' ran only in {c.run_id}" in text


def test_different_case_selections_are_warned_about(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    suite = write_suite(tmp_path, server.url)
    a = ws.evaluate(suite).run
    b = ws.evaluate(suite, filter="France").run
    text = "\n".join(ws.evals.compare(a.run_id, b.run_id)["warnings"])
    assert "selected cases differently" in text and "3 case(s) ran only in" in text
