"""The eval runner against the real HTTP path: results, statistics, faults, cache, resume."""

from __future__ import annotations

import csv
import importlib.util
import io
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from llmops import Workspace
from llmops.errors import InputError, SuiteError
from llmops.evals.export import write_parquet
from llmops.evals.testing import Fault, MockServer
from tests.evals.conftest import default_responder, is_judge, model, write_suite


def test_a_run_stores_results_and_summarises_them(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    outcome = ws.evaluate(write_suite(tmp_path, server.url))
    out = outcome.to_json()
    assert out["cases"] == 4 and out["errors"] == 0 and out["status"] == "completed"
    (target,) = out["targets"]
    assert target["name"] == "model" and target["pass_rate"] == 0.75
    assert target["mean_score"] == 0.75 and target["ci_low"] <= 0.75 <= target["ci_high"]
    results = list(ws.evals.results(out["run_id"]))
    assert [r["passed"] for r in results] == [True, True, False, True]
    assert results[2]["output"] == "I am not sure." and results[2]["vars"] == {"country": "Peru"}
    assert results[0]["prompt_tokens"] > 0 and results[0]["latency_ms"] > 0
    assert outcome.calls == 4


def test_identical_requests_are_never_paid_twice(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    suite = write_suite(tmp_path, server.url)
    ws.evaluate(suite)
    again = ws.evaluate(suite)
    assert (again.calls, again.cache_hits) == (0, 4)
    assert [r["cached"] for r in ws.evals.results(again.run.run_id)] == [True] * 4
    fresh = ws.evaluate(suite, no_cache=True)
    assert fresh.calls == 4 and len(server.requests) == 8


@pytest.mark.parametrize("kind", ["429", "500", "malformed", "disconnect"])
def test_transient_faults_are_retried(
    ws: Workspace, tmp_path: Path, kind: str, make_server: Callable[..., MockServer]
) -> None:
    server = make_server(faults=[kind, kind])  # the first two requests fail
    outcome = ws.evaluate(write_suite(tmp_path, server.url))
    assert outcome.run.errors == 0 and outcome.retries == 2
    assert outcome.run.summary["targets"][0]["pass_rate"] == 0.75


def test_timeouts_are_retried_then_recorded(
    ws: Workspace, tmp_path: Path, make_server: Callable[..., MockServer]
) -> None:
    server = make_server(faults=["timeout"] * 2)
    suite = write_suite(
        tmp_path, server.url, extra="timeout_s: 0.5\nmax_retries: 0\nconcurrency: 1\n"
    )
    run = ws.evaluate(suite).run
    assert run.errors == 2 and run.cases == 4  # the first two requests hung
    errored = [r for r in ws.evals.results(run.run_id) if r["passed"] is None]
    assert [r["case_index"] for r in errored] == [0, 1]
    assert "timed out after 0.5 s" in errored[0]["error"]
    # Errored and answered cases share a batch insert: the answered ones keep their usage.
    answered = [r for r in ws.evals.results(run.run_id) if r["passed"] is not None]
    assert all(r["prompt_tokens"] > 0 and r["latency_ms"] > 0 for r in answered)


def test_a_failing_provider_is_recorded_per_case_and_the_run_completes(
    ws: Workspace, tmp_path: Path, make_server: Callable[..., MockServer]
) -> None:
    server = make_server(lambda body: Fault("500"))
    run = ws.evaluate(write_suite(tmp_path, server.url, extra="max_retries: 1\n")).run
    assert run.status == "completed" and run.errors == 4
    assert all(
        "HTTP 500" in r["error"] and "after 2 attempts" in r["error"]
        for r in ws.evals.results(run.run_id)
    )
    assert run.summary["targets"][0]["pass_rate"] is None


def test_an_unreachable_provider(ws: Workspace, tmp_path: Path) -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again: nothing listens there
    suite = write_suite(tmp_path, f"http://127.0.0.1:{port}/v1", extra="max_retries: 0\n")
    run = ws.evaluate(suite).run
    assert run.errors == 4
    assert "connection failed" in next(ws.evals.results(run.run_id))["error"]


def test_rate_limit_paces_requests(ws: Workspace, tmp_path: Path, server: MockServer) -> None:
    suite = write_suite(
        tmp_path,
        server.url,
        targets=f"""
  - name: model
    prompt: [{{role: user, content: "What is the capital of {{{{ country }}}}?"}}]
    model: {{provider: openai, name: s, api_base: "{server.url}", rate_limit_rps: 10}}
""",
    )
    started = time.perf_counter()
    ws.evaluate(suite)
    assert time.perf_counter() - started >= 0.29  # 4 requests at 10/s: at least 0.3 s apart


def test_huge_and_non_utf8_outputs(
    ws: Workspace, tmp_path: Path, make_server: Callable[..., MockServer]
) -> None:
    from llmops.evals.cases import MAX_OUTPUT_CHARS

    def respond(body: dict[str, Any]) -> str:
        q = body["messages"][-1]["content"]
        return "Paris " * 400_000 if "France" in q else "Madrid \udcff bytes"

    server = make_server(respond)
    run = ws.evaluate(write_suite(tmp_path, server.url)).run
    results = list(ws.evals.results(run.run_id))
    assert results[0]["passed"] is True  # scored on the whole output
    assert len(results[0]["output"]) < MAX_OUTPUT_CHARS + 100
    assert "more characters not stored" in results[0]["output"]
    assert (results[1]["passed"] is True and "\ufffd" in results[1]["output"]) or results[1][
        "error"
    ]


@pytest.mark.parametrize(
    ("cases", "match"),
    [
        (
            "\n  - vars: {nation: France}\n",
            r"suite.yaml:\d+: case 0 \(target 'model'\): missing required variable 'country'",
        ),
        (" []\n", "the suite has no cases"),
    ],
)
def test_bad_cases_are_refused_before_any_call(
    ws: Workspace, tmp_path: Path, server: MockServer, cases: str, match: str
) -> None:
    with pytest.raises(SuiteError, match=match):
        ws.evaluate(write_suite(tmp_path, server.url, cases=cases))
    assert server.requests == []


def test_cases_from_jsonl_and_csv_files(ws: Workspace, tmp_path: Path, server: MockServer) -> None:
    (tmp_path / "cases.jsonl").write_text(
        json.dumps(
            {"vars": {"country": "Italy"}, "assert": [{"type": "contains", "value": "Rome"}]}
        )
        + "\n"
        + json.dumps({"country": "Kenya"})
        + "\n"
    )
    (tmp_path / "cases.csv").write_text(
        "country,__expected\nEgypt,icontains: cairo\nChile,Santiago\n"
    )
    for name in ("cases.jsonl", "cases.csv"):
        suite = write_suite(
            tmp_path, server.url, cases=" []\n", extra=f"cases_file: {name}\n", name=f"{name}.yaml"
        )
        run = ws.evaluate(suite).run
        results = list(ws.evals.results(run.run_id))
        assert len(results) == 2
        if name == "cases.jsonl":
            assert [r["passed"] for r in results] == [True, True]
        else:  # 'Santiago' alone means equals, and the answer is a sentence
            assert [r["passed"] for r in results] == [True, False]


def test_a_bad_row_in_the_cases_file_names_file_and_line(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    (tmp_path / "cases.jsonl").write_bytes(b'{"country": "Italy"}\n{"country": "\xff"}\n')
    suite = write_suite(tmp_path, server.url, cases=" []\n", extra="cases_file: cases.jsonl\n")
    with pytest.raises(SuiteError, match=r"cases.jsonl:2: not a JSON object"):
        ws.evaluate(suite)


def _kill_mid_run(ws: Workspace, suite: Path) -> str:
    env = {**os.environ, "LLMOPS_WORKSPACE": str(ws.root)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llmops", "eval", "run", str(suite), "--json"],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = ws.evals.list()
        if runs and len(ws.evals.done(runs[0].run_id)) >= 300:
            proc.send_signal(signal.SIGKILL)
            proc.wait(30)
            return runs[0].run_id
        time.sleep(0.02)
    proc.kill()
    proc.wait(30)
    pytest.fail("the run never got far enough")


def test_a_killed_run_resumes_without_recalling_finished_cases(
    ws: Workspace, tmp_path: Path, make_server: Callable[..., MockServer]
) -> None:
    server = make_server(latency_s=0.01)  # slow enough to be killed mid-way on a busy machine
    rows = "".join(
        json.dumps({"country": c, "n": i}) + "\n"
        for i in range(250)
        for c in ("France", "Peru", "Spain", "Japan")
    )
    (tmp_path / "cases.jsonl").write_text(rows)
    suite = write_suite(
        tmp_path,
        server.url,
        cases=" []\n",
        extra="cases_file: cases.jsonl\n"
        "default_assert: [{type: icontains, value: capital}]\nconcurrency: 4\n",
    )
    run_id = _kill_mid_run(ws, suite)
    assert ws.evals.get(run_id).status == "running"
    finished = len(ws.evals.done(run_id))
    assert finished < 1000
    before = len(server.requests)
    with pytest.raises(InputError, match="ran a different suite"):
        ws.evaluate(write_suite(tmp_path, server.url, name="other.yaml"), resume=run_id)
    outcome = ws.evaluate(suite, resume=run_id)
    assert outcome.run.status == "completed" and outcome.run.cases == 1000
    assert len(list(ws.evals.results(run_id))) == 1000
    # Only unfinished cases were called (the cache answers repeats of in-flight ones anyway).
    assert len(server.requests) - before <= 1000 - finished
    assert outcome.run.summary["targets"][0]["pass_rate"] == 0.75


def test_litellm_provider_through_the_same_server(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    if importlib.util.find_spec("litellm") is None:
        pytest.skip("needs litellm: pip install '.[eval]'")
    suite = write_suite(
        tmp_path,
        server.url,
        targets=f"""
  - name: via-litellm
    prompt: [{{role: user, content: "What is the capital of {{{{ country }}}}?"}}]
    model: {{provider: litellm, name: openai/scripted, api_base: "{server.url}", api_key_env: MOCK_KEY}}
""",
    )
    os.environ["MOCK_KEY"] = "sk-test"
    try:
        run = ws.evaluate(suite).run
    finally:
        os.environ.pop("MOCK_KEY")
    errors = [r["error"] for r in ws.evals.results(run.run_id) if r["error"]]
    assert run.errors == 0, errors
    assert run.summary["targets"][0]["pass_rate"] == 0.75
    assert all(r["completion_tokens"] > 0 for r in ws.evals.results(run.run_id))


def test_two_targets_are_compared_with_paired_statistics(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    targets = f"""
  - name: base
    prompt: [{{role: user, content: "Capital of {{{{ country }}}}?"}}]
    model: {{provider: openai, name: s, api_base: "{server.url}"}}
  - name: tuned
    prompt: [{{role: user, content: "Capital of {{{{ country }}}}? Say it."}}]
    model: {{provider: openai, name: s, api_base: "{server.url}"}}
"""
    rows = "".join(
        f"  - vars: {{country: {c}}}\n    assert: [{{type: icontains, value: capital}}]\n"
        for c in ["France", "Spain", "Japan", "Italy"] * 5
    )
    out = ws.evaluate(
        write_suite(tmp_path, server.url, targets=targets, cases="\n" + rows)
    ).to_json()
    (comparison,) = out["comparisons"]
    assert comparison["a"] == "base" and comparison["b"] == "tuned" and comparison["n"] == 20
    assert comparison["ties"] == 20 and comparison["p_sign"] == 1.0


def test_gate_compare_and_exports(ws: Workspace, tmp_path: Path, server: MockServer) -> None:
    import xml.etree.ElementTree as ET

    good = ws.evaluate(write_suite(tmp_path, server.url)).run
    worse_cases = """
  - vars: {country: France}
    assert: [{type: icontains, value: paris}]
  - vars: {country: Spain}
    assert: [{type: icontains, value: barcelona}]
  - vars: {country: Peru}
    assert: [{type: icontains, value: lima}]
  - vars: {country: Japan}
    assert: [{type: contains, value: Tokyo}]
"""
    worse = ws.evaluate(write_suite(tmp_path, server.url, cases=worse_cases, name="w.yaml")).run
    report = ws.evals.gate(worse.run_id, baseline=good.run_id)
    assert not report.ok and "0.500 is below the baseline's 0.750 by 0.250" in report.problems[0]
    assert ws.evals.gate(worse.run_id, baseline=good.run_id, max_drop=0.3).ok
    assert not ws.evals.gate(good.run_id, min_pass_rate=0.9).ok
    diff = ws.evals.compare(good.run_id, worse.run_id)
    assert [c["vars"] for c in diff["changed"]] == [{"country": "Spain"}]
    jsonl = "".join(ws.evals.export(worse.run_id, "jsonl")).splitlines()
    assert len(jsonl) == 4 and json.loads(jsonl[1])["passed"] is False
    csv_text = "".join(ws.evals.export(worse.run_id, "csv"))
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert list(rows[0])[:3] == ["case_index", "case_id", "target"]
    # Flat columns, as in to_pandas(): variables and each check with its reason.
    assert rows[1]["vars.country"] == "Spain" and rows[1]["passed"] == "False"
    assert rows[1]["assertion.icontains.passed"] == "False"
    assert "barcelona" in rows[1]["assertion.icontains.reason"]
    assert rows[3]["assertion.contains.passed"] == "True"  # Japan's check is another type
    parquet = pytest.importorskip("pandas").read_parquet(
        write_parquet(ws.evals, worse.run_id, tmp_path / "r.parquet")
    )
    assert list(parquet["vars.country"]) == ["France", "Spain", "Peru", "Japan"]
    assert parquet["passed"].tolist() == [True, False, False, True]
    junit = ET.fromstring("".join(ws.evals.export(worse.run_id, "junit")))
    suite = junit.find("testsuite")
    assert suite is not None and suite.get("tests") == "4" and suite.get("failures") == "2"


def test_the_judge_uses_registry_prompts(ws: Workspace, tmp_path: Path, server: MockServer) -> None:
    suite = write_suite(
        tmp_path,
        server.url,
        cases="""
  - vars: {country: France}
    assert: [{type: llm-rubric, value: names the capital}]
  - vars: {country: Peru}
    expected: Lima
    assert: [{type: reference-graded}]
""",
        extra=f'judge: {{model: {{provider: openai, name: j, api_base: "{server.url}"}}}}\n',
    )
    run = ws.evaluate(suite).run
    assert [r["passed"] for r in ws.evals.results(run.run_id)] == [True, False]
    names = {p.name for p in ws.prompts.list(include_builtin=True)}
    assert not any(p.name.startswith("llmops-") for p in ws.prompts.list())
    assert {"llmops-judge-rubric", "llmops-judge-reference", "llmops-judge-pairwise"} <= names
    ws.evaluate(suite)
    assert ws.prompts.get("llmops-judge-rubric").version == 1  # identical content: no new version
    judged = [b for b in server.requests if is_judge(b)]
    assert "Reference answer" in judged[1]["messages"][-1]["content"]
    assert model({"messages": [{"role": "user", "content": "Peru"}]}) == "I am not sure."
    assert default_responder is not None


def test_the_gate_counts_errors(
    ws: Workspace, tmp_path: Path, make_server: Callable[..., MockServer]
) -> None:
    dead = make_server(lambda body: Fault("500"))
    all_errored = ws.evaluate(write_suite(tmp_path, dead.url, extra="max_retries: 0\n")).run
    report = ws.evals.gate(all_errored.run_id)
    assert not report.ok
    assert any("no case was graded" in p for p in report.problems), report.problems
    assert not ws.evals.gate(all_errored.run_id, max_errors=None).ok  # nothing graded
    flaky = make_server(faults=["500"] * 3)  # with one retry: the first case errors
    some = ws.evaluate(write_suite(tmp_path, flaky.url, extra="max_retries: 1\nconcurrency: 1\n"))
    assert some.run.errors == 1
    run_id = some.run.run_id
    assert not ws.evals.gate(run_id).ok  # any error fails by default
    assert ws.evals.gate(run_id, max_errors=1).ok
    assert not ws.evals.gate(run_id, max_errors=1, min_pass_rate=0.9).ok  # 2/3 graded pass


def test_a_hostile_retry_after_cannot_hang_the_run(
    ws: Workspace, tmp_path: Path, make_server: Callable[..., MockServer]
) -> None:
    server = make_server(
        faults=[Fault("429", retry_after_s=1e9), Fault("429", retry_after_s=float("inf"))]
    )
    suite = write_suite(
        tmp_path, server.url, extra="timeout_s: 0.5\nmax_retries: 3\nconcurrency: 1\n"
    )
    started = time.perf_counter()
    run = ws.evaluate(suite).run
    assert time.perf_counter() - started < 30
    assert run.errors == 0 and run.summary["targets"][0]["pass_rate"] == 0.75


def test_one_bad_output_never_ends_a_judged_run(ws: Workspace, tmp_path: Path) -> None:
    def respond(body: dict[str, Any]) -> str:
        if is_judge(body):
            if "Spain" in body["messages"][-1]["content"]:
                return "[" * 100_000  # a pathological judge reply
            return '{"reason": "ok", "pass": true}'
        q = body["messages"][-1]["content"]
        return "Paris " * 2_000_000 if "France" in q else "Madrid"

    with MockServer(respond) as server:
        suite = write_suite(
            tmp_path,
            server.url,
            cases="""
  - vars: {country: France}
    assert: [{type: llm-rubric, value: names the capital}]
  - vars: {country: Spain}
    assert: [{type: llm-rubric, value: names the capital}]
  - vars: {country: Japan}
    assert: [{type: llm-rubric, value: names the capital}]
""",
            extra=f'judge: {{model: {{provider: openai, name: j, api_base: "{server.url}"}}}}\n',
        )
        outcome = ws.evaluate(suite)
        judged = [b for b in server.requests if is_judge(b)]
    assert outcome.run.status == "completed"
    france, spain, japan = ws.evals.results(outcome.run.run_id)
    assert france["passed"] is True
    assert france["assertions"][0]["judge_saw_chars"] > 0
    assert all(len(b["messages"][-1]["content"]) < 300_000 for b in judged)
    assert spain["passed"] is None and "judge error" in spain["error"]
    assert japan["passed"] is True


def test_an_unexpected_scoring_failure_is_that_cases_error(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    (tmp_path / "boom.py").write_text(
        "def score(output, context):\n    raise RecursionError('deep')\n", encoding="utf-8"
    )
    suite = write_suite(
        tmp_path,
        server.url,
        cases="""
  - vars: {country: France}
    assert: [{type: python, value: "boom.py:score"}]
  - vars: {country: Spain}
    assert: [{type: icontains, value: madrid}]
""",
    )
    run = ws.evaluate(suite).run
    first, second = ws.evals.results(run.run_id)
    assert run.status == "completed" and first["passed"] is None and "deep" in first["error"]
    assert second["passed"] is True


def test_keys_echoed_by_an_endpoint_are_never_stored(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import threading

    from aiohttp import web

    monkeypatch.setenv("PROVIDER_CRED", "sk-test-ABCDEFGHIJKLMNOPQRSTUV")

    async def handle(request: web.Request) -> web.Response:
        body = await request.json()
        auth = request.headers.get("Authorization", "")
        if "Spain" in body["messages"][-1]["content"]:  # an answer repeating the key
            reply = {"choices": [{"message": {"content": f"your key is {auth[7:]}"}}]}
            return web.json_response(reply)
        return web.json_response({"error": f"bad header Authorization: {auth}"}, status=401)

    loop = asyncio.new_event_loop()
    runner = web.AppRunner(web.Application())
    runner.app.router.add_post("/v1/chat/completions", handle)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    try:
        suite = write_suite(
            tmp_path,
            "",
            targets=f"""
  - name: model
    prompt: [{{role: user, content: "Capital of {{{{ country }}}}?"}}]
    model: {{provider: openai, name: m, api_base: "http://127.0.0.1:{port}/v1", api_key_env: PROVIDER_CRED}}
""",
            extra="max_retries: 0\n",
        )
        run = ws.evaluate(suite).run
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        loop.close()
    stored = json.dumps(list(ws.evals.results(run.run_id))) + json.dumps(
        ws.evals.suite_of(run.run_id)
    )
    assert "ABCDEFGHIJKLMNOPQRSTUV" not in stored
    assert "[REDACTED]" in stored and "HTTP 401" in stored


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_drop": float("nan")}, "--max-drop must be a number from 0 to 1"),
        ({"max_drop": float("inf")}, "--max-drop must be a number from 0 to 1"),
        ({"min_pass_rate": float("nan")}, "--min-pass-rate must be a number from 0 to 1"),
        ({"max_errors": -1}, "--max-errors must be zero or more"),
    ],
)
def test_nonsense_gate_thresholds_are_refused(
    ws: Workspace, tmp_path: Path, server: MockServer, kwargs: dict[str, Any], match: str
) -> None:
    run = ws.evaluate(write_suite(tmp_path, server.url)).run
    with pytest.raises(InputError, match=match):
        ws.evals.gate(run.run_id, **kwargs)


def test_a_baseline_that_graded_nothing_fails_the_gate(
    ws: Workspace, tmp_path: Path, server: MockServer, make_server: Callable[..., MockServer]
) -> None:
    dead = make_server(lambda body: Fault("500"))
    empty = ws.evaluate(write_suite(tmp_path, dead.url, extra="max_retries: 0\n")).run
    good = ws.evaluate(write_suite(tmp_path, server.url, name="good.yaml")).run
    report = ws.evals.gate(good.run_id, baseline=empty.run_id)
    assert not report.ok and "graded no case" in report.problems[0]


def test_dates_in_case_vars_are_text(ws: Workspace, tmp_path: Path, server: MockServer) -> None:
    suite = write_suite(
        tmp_path,
        server.url,
        cases="""
  - vars: {country: France, day: 2024-01-01}
    assert: [{type: icontains, value: paris}]
""",
    )
    run = ws.evaluate(suite).run
    assert run.status == "completed"
    assert next(ws.evals.results(run.run_id))["vars"]["day"] == "2024-01-01"


def test_keys_a_model_repeats_stay_out_of_the_response_cache(
    ws: Workspace, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    monkeypatch.setenv("PROVIDER_CRED", "sk-cache-ABCDEFGHIJKLMNOPQRSTUV")
    with MockServer(lambda body: "the key is sk-cache-ABCDEFGHIJKLMNOPQRSTUV") as server:
        suite = write_suite(
            tmp_path,
            server.url,
            targets=f"""
  - name: model
    prompt: [{{role: user, content: "hi {{{{ country }}}}"}}]
    model: {{provider: openai, name: m, api_base: "{server.url}", api_key_env: PROVIDER_CRED}}
""",
        )
        ws.evaluate(suite)
    with sqlite3.connect(ws.eval_cache) as conn:
        cached = " ".join(str(row) for row in conn.execute("SELECT * FROM response"))
    assert "ABCDEFGHIJKLMNOPQRSTUV" not in cached and "[REDACTED]" in cached


def test_a_baseline_without_the_target_or_a_drop_without_a_baseline_is_no_pass(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    run = ws.evaluate(write_suite(tmp_path, server.url)).run
    other_targets = f"""
  - name: different
    prompt: [{{role: user, content: "Capital of {{{{ country }}}}?"}}]
    model: {{provider: openai, name: m, api_base: "{server.url}"}}
"""
    other = ws.evaluate(write_suite(tmp_path, server.url, targets=other_targets, name="o.yaml")).run
    report = ws.evals.gate(run.run_id, baseline=other.run_id)
    assert not report.ok and "has no target 'model'" in report.problems[0]
    with pytest.raises(InputError, match="--max-drop needs --baseline"):
        ws.evals.gate(run.run_id, max_drop=0.5)


def test_exports_survive_mixed_variable_types_and_neutralise_formulas(
    ws: Workspace, tmp_path: Path, server: MockServer
) -> None:
    cases = """
  - vars: {country: France, n: 1}
    assert: [{type: icontains, value: paris}]
  - vars: {country: "=HYPERLINK(1)", n: two}
    assert: [{type: icontains, value: x}]
"""
    run = ws.evaluate(write_suite(tmp_path, server.url, cases=cases)).run
    rows = list(csv.DictReader(io.StringIO("".join(ws.evals.export(run.run_id, "csv")))))
    assert rows[1]["vars.country"] == "'=HYPERLINK(1)"  # a spreadsheet shows it, never runs it
    frame = pytest.importorskip("pandas").read_parquet(
        write_parquet(ws.evals, run.run_id, tmp_path / "m.parquet")
    )
    assert list(frame["vars.n"]) == ["1", "two"]  # one column type: text
