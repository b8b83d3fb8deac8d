"""Stored eval runs read back typed: summaries, rows, gate reports, model identities."""

from __future__ import annotations

from pathlib import Path

from llmops import Workspace
from llmops.evals.records import ResultRow, RunSummary
from llmops.evals.testing import MockServer
from tests.evals.conftest import write_suite


def test_a_finished_run_reads_back_typed(ws: Workspace, tmp_path: Path, server: MockServer) -> None:
    run = ws.evaluate(write_suite(tmp_path, server.url)).run
    stored = ws.eval_runs.get(run.run_id)
    summary = stored.summary_model
    assert isinstance(summary, RunSummary)
    target = summary.target("model")
    assert (target.cases, target.graded, target.errors, target.pass_rate) == (4, 4, 0, 0.75)
    assert summary.to_json() == stored.summary  # the typed form is the stored form
    rows = list(ws.eval_runs.rows(run.run_id))
    assert all(isinstance(r, ResultRow) for r in rows) and len(rows) == 4
    assert [r.passed for r in rows] == [r["passed"] for r in ws.eval_runs.results(run.run_id)]
    identity = stored.model_identities["model"]
    assert (identity.provider, identity.name, identity.api_base) == (
        "openai",
        "scripted",
        server.url,
    )
    assert stored.status == "completed"


def test_gate_reports_are_typed_and_versioned(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    run = ws.evaluate(write_suite(tmp_path, server.url)).run
    report = ws.eval_runs.gate(run.run_id, baseline=run.run_id, min_pass_rate=0.9)
    (target,) = report.targets
    assert (target.name, target.pass_rate, target.baseline_pass_rate) == ("model", 0.75, 0.75)
    data = report.to_json()
    assert data["format_version"] == 1 and data["ok"] is False
    assert data["targets"][0] == {
        "name": "model",
        "pass_rate": 0.75,
        "errors": 0,
        "baseline_pass_rate": 0.75,
    }


def test_the_two_comparison_targets_rebuild_their_statistics(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    targets = f"""
  - name: a
    prompt: [{{role: user, content: "What is the capital of {{{{ country }}}}?"}}]
    model: {{provider: openai, name: x, api_base: "{server.url}"}}
  - name: b
    prompt: [{{role: user, content: "Capital of {{{{ country }}}}?"}}]
    model: {{provider: openai, name: y, api_base: "{server.url}"}}
"""
    run = ws.evaluate(write_suite(tmp_path, server.url, targets=targets)).run
    summary = run.summary_model
    assert summary is not None and summary.comparisons is not None
    (comparison,) = summary.comparisons
    assert (comparison.a, comparison.b, comparison.n) == ("a", "b", 4)
    assert comparison.paired().verdict() == "no significant difference (+0.000, p=1, n=4)"


def test_results_to_pandas_flatten_vars_and_assertions(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    run = ws.evaluate(write_suite(tmp_path, server.url)).run
    frame = ws.evals.results(run.run_id).to_pandas()
    assert len(frame) == 4 and list(frame["passed"]) == [True, True, False, True]
    assert list(frame["vars.country"]) == ["France", "Spain", "Peru", "Japan"]
    assert "assertion.icontains.passed" in frame.columns
    assert "assertion.icontains.reason" in frame.columns
    assert next(ws.evals.results(run.run_id))["target"] == "model"  # still iterates dicts


def test_case_metadata_is_kept_with_each_result(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    cases = """
  - vars: {country: France}
    metadata: {topic: geography, tags: [europe, easy]}
    assert: [{type: icontains, value: paris}]
  - vars: {country: Peru}
    assert: [{type: icontains, value: lima}]
"""
    (tmp_path / "more.jsonl").write_text(
        '{"vars": {"country": "Japan"}, "metadata": {"topic": "geography", "tags": ["asia"]}}\n',
        encoding="utf-8",
    )
    suite = write_suite(tmp_path, server.url, cases=cases, extra="\ncases_file: more.jsonl\n")
    run = ws.evaluate(suite).run
    rows = list(ws.eval_runs.rows(run.run_id))
    assert [r.metadata for r in rows] == [
        {"topic": "geography", "tags": ["europe", "easy"]},
        {},
        {"topic": "geography", "tags": ["asia"]},
    ]
    frame = ws.evals.results(run.run_id).to_pandas()
    assert list(frame["metadata.topic"].fillna("")) == ["geography", "", "geography"]


def test_show_json_names_each_targets_model(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    run = ws.evaluate(write_suite(tmp_path, server.url)).run
    (target,) = ws.evals.get(run.run_id).to_json()["targets"]
    assert target["model"]["provider"] == "openai" and target["model"]["name"] == "scripted"
