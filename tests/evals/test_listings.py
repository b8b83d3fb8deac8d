"""Eval run listings for notebooks: search filters, DataFrames, short reprs and HTML."""

from __future__ import annotations

from datetime import timedelta, timezone
from pathlib import Path

import pytest

from llmops import Workspace
from llmops.errors import EvalRunNotFoundError, InputError
from llmops.evals.testing import MockServer
from tests.evals.conftest import write_suite


def test_search_filters_by_suite_status_model_and_time(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    first = ws.evaluate(write_suite(tmp_path, server.url, name="capitals.yaml")).run
    second = ws.evaluate(write_suite(tmp_path, server.url, name="other.yaml")).run
    assert [r.run_id for r in ws.evals.list()] == [second.run_id, first.run_id]
    assert [r.run_id for r in ws.evals.search(suite="capitals")] == [first.run_id]
    assert ws.evals.search(status="running") == []
    assert len(ws.evals.search(model="scripted")) == 2
    assert ws.evals.search(model="another-model") == []
    assert len(ws.evals.search(since="1h")) == 2
    assert ws.evals.search(until=timedelta(hours=1)) == []
    assert [r.run_id for r in ws.evals.search(limit=1)] == [second.run_id]
    with pytest.raises(InputError, match="since 'yesterday' is not a time"):
        ws.evals.search(since="yesterday")


def test_latest_names_the_newest_run(ws: Workspace, tmp_path: Path, server: MockServer) -> None:
    with pytest.raises(EvalRunNotFoundError, match="there is no eval run yet"):
        ws.evals.get("latest")
    suite = write_suite(tmp_path, server.url)
    ws.evaluate(suite)
    second = ws.evaluate(suite).run
    assert ws.evals.get("latest").run_id == second.run_id
    assert [r["cached"] for r in ws.evals.results("latest")] == [True] * 4  # the second run
    assert ws.evals.gate("latest").run_id == second.run_id


def test_listings_become_dataframes_with_a_column_per_target_number(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    run = ws.evaluate(write_suite(tmp_path, server.url)).run
    frame = ws.evals.list().to_pandas()
    assert list(frame["run_id"]) == [run.run_id]
    row = frame.iloc[0]
    assert row["pass_rate.model"] == 0.75 and row["errors.model"] == 0
    assert row["model.model"] == "scripted" and row["suite"] == "suite"


def test_reprs_are_short_and_html_is_escaped(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    outcome = ws.evaluate(write_suite(tmp_path, server.url, name="x<script>.yaml"))
    text = repr(outcome)
    assert text.startswith(f"EvalOutcome(run_id='{outcome.run_id}'") and len(text) < 500
    assert "pass 0.75" in text
    assert repr(outcome.run).startswith("EvalRunRecord(run_id=") and len(repr(outcome.run)) < 300
    html = outcome.run._repr_html_()
    assert "x&lt;script&gt;" in html and "<script>" not in html
    assert "pass_rate" in outcome._repr_html_()
    assert f"1 run(s), latest {outcome.run_id}" in repr(ws.evals)


def test_times_with_offsets_are_compared_in_utc_and_absurd_ages_are_refused(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    run = ws.evaluate(write_suite(tmp_path, server.url)).run
    before = (run.started_at - timedelta(minutes=1)).astimezone(timezone(timedelta(hours=5)))
    # One minute before the run, written in UTC+05:00: the run is not before it.
    assert ws.evals.search(until=before.isoformat()) == []
    assert len(ws.evals.search(since=before.isoformat())) == 1
    with pytest.raises(InputError, match="too far back"):
        ws.evals.search(since="99999999999d")
    with pytest.raises(TypeError, match="since takes a datetime"):
        ws.evals.search(since=7)  # type: ignore[arg-type]


def test_reprs_of_empty_stores_say_so(ws: Workspace) -> None:
    assert repr(ws.evals).startswith("EvalRuns(0 run(s);")
    assert repr(ws.train_runs).startswith("Runs(0 run(s);")
    assert ws.artifacts.list().to_pandas().empty and ws.prompts.list().to_pandas().empty
