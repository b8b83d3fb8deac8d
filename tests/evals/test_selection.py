"""Choosing cases: --filter, --limit and --repeat, recorded with the run and kept by resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from llmops import Workspace
from llmops.errors import InputError, SuiteError
from llmops.evals.selection import CaseSelection
from llmops.evals.testing import MockServer
from tests.evals.conftest import write_suite


def _countries(ws: Workspace, run_id: str) -> list[str]:
    return [r["vars"]["country"] for r in ws.evals.results(run_id)]


def test_filter_matches_ids_descriptions_and_vars_and_limit_takes_the_first(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    suite = write_suite(tmp_path, server.url)
    run = ws.evaluate(suite, filter="Spain|Japan").run
    assert _countries(ws, run.run_id) == ["Spain", "Japan"] and run.cases == 2
    # The cases keep their positions in the suite.
    assert [r["case_index"] for r in ws.evals.results(run.run_id)] == [1, 3]
    assert run.options["filter"] == "Spain|Japan"
    limited = ws.evaluate(suite, filter="a", limit=2).run  # France, Spain, Japan match "a"
    assert _countries(ws, limited.run_id) == ["France", "Spain"]


def test_repeats_are_fresh_samples_with_their_own_ids(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    suite = write_suite(tmp_path, server.url)
    ws.evaluate(suite)  # every request answered once: now in the cache
    asked = len(server.requests)
    outcome = ws.evaluate(suite, repeat=3, filter="France")
    rows = list(ws.evals.results(outcome.run.run_id))
    assert [r["case_id"] for r in rows] == ["case-0#1", "case-0#2", "case-0#3"]
    assert len({r["case_index"] for r in rows}) == 3
    # The first repeat is the cached answer; the other two are new model calls.
    assert (outcome.cache_hits, outcome.calls) == (1, 2) and len(server.requests) == asked + 2
    assert outcome.run.summary["targets"][0]["cases"] == 3


def test_bad_selections_are_refused_before_anything_runs(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    suite = write_suite(tmp_path, server.url)
    with pytest.raises(InputError, match="--filter '\\(' is not a regular expression"):
        ws.evaluate(suite, filter="(")
    with pytest.raises(InputError, match="--limit must be at least 1"):
        ws.evaluate(suite, limit=0)
    with pytest.raises(InputError, match="--repeat must be from 1 to 1000"):
        ws.evaluate(suite, repeat=0)
    with pytest.raises(SuiteError, match="no case matches the selection"):
        ws.evaluate(suite, filter="Atlantis")
    assert ws.evals.list() == [] and server.requests == []


def test_resume_keeps_the_options_a_run_started_with(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    suite = write_suite(tmp_path, server.url)
    run = ws.evaluate(suite, filter="France|Peru", no_cache=True).run
    with ws.db.write() as session:  # as if killed after the first case
        from sqlalchemy import delete, update

        from llmops.db.models import EvalResult, EvalRun

        session.execute(
            delete(EvalResult).where(EvalResult.run_id == run.run_id, EvalResult.case_index == 2)
        )
        session.execute(update(EvalRun).values(status="running", summary=None))
    asked = len(server.requests)
    resumed = ws.evaluate(suite, resume=run.run_id)  # no flags: the original ones apply
    assert _countries(ws, resumed.run.run_id) == ["France", "Peru"]
    # --no-cache was kept: Peru was asked again rather than read from the cache.
    assert resumed.calls == 1 and len(server.requests) == asked + 1
    assert resumed.run.options == {"no_cache": True, "filter": "France|Peru", "limit": None,
                                   "repeat": 1}  # fmt: skip
    with pytest.raises(InputError, match="runs the cases it started with"):
        ws.evaluate(suite, resume=run.run_id, filter="Japan")
    with pytest.raises(InputError, match="already completed"):
        ws.evaluate(suite, resume="latest")  # `latest` is the run it names
    with pytest.raises(InputError, match="--resume needs a run id"):
        ws.evaluate(suite, resume=" ")
    with pytest.raises(InputError, match="concurrency must be at least 1"):
        ws.evaluate(suite, concurrency=-3)


def test_selection_round_trips_through_its_recorded_form() -> None:
    chosen = CaseSelection("x", 3, 2)
    assert CaseSelection.from_json(chosen.to_json()) == chosen
    assert CaseSelection.from_json(None).everything
