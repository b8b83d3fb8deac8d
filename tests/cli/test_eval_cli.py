"""The eval CLI contract: run, show, gate, compare, export."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from llmops import Workspace
from llmops.evals.testing import MockServer
from tests.evals.conftest import default_responder, write_suite


def llmops(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    env.update(LLMOPS_USER="tester", LITELLM_LOCAL_MODEL_COST_MAP="True")
    return subprocess.run(
        [sys.executable, "-m", "llmops", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def project(tmp_path: Path) -> Iterator[tuple[Path, MockServer]]:
    root = tmp_path / "proj"
    Workspace.init(root, examples=False).close()
    with MockServer(default_responder) as server:
        yield root, server


def test_run_show_gate_compare_export(project: tuple[Path, MockServer]) -> None:
    root, server = project
    write_suite(
        root,
        server.url,
        extra=f'judge: {{model: {{provider: openai, name: j, api_base: "{server.url}"}}}}\n',
    )
    done = llmops("eval", "run", "suite.yaml", "--concurrency", "4", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["cases"] == 4 and out["errors"] == 0 and out["run_id"].startswith("eval-")
    (target,) = out["targets"]
    assert {"name", "pass_rate", "mean_score", "ci_low", "ci_high"} <= target.keys()
    assert target["pass_rate"] == 0.75

    shown = json.loads(llmops("eval", "show", out["run_id"], "--json", cwd=root).stdout)
    assert shown["format_version"] == 1 and shown["llmops_version"]
    case = shown["results"][0]
    assert {"vars", "output", "passed", "score"} <= case.keys()
    assert case["vars"] == {"country": "France"} and case["passed"] is True

    again = json.loads(llmops("eval", "run", "suite.yaml", "--no-cache", "--json", cwd=root).stdout)
    assert again["calls"] == 4 and again["cache_hits"] == 0

    ok = llmops("eval", "gate", again["run_id"], "--baseline", out["run_id"], "--json", cwd=root)
    assert ok.returncode == 0 and json.loads(ok.stdout)["ok"] is True
    failing = llmops("eval", "gate", again["run_id"], "--min-pass-rate", "0.9", "--json", cwd=root)
    assert failing.returncode == 1 and json.loads(failing.stdout)["ok"] is False

    compared = json.loads(
        llmops("eval", "compare", out["run_id"], again["run_id"], "--json", cwd=root).stdout
    )
    assert compared["targets"][0]["n"] == 4 and compared["changed"] == []
    junit = llmops("eval", "export", out["run_id"], "--format", "junit", "-o", "r.xml", cwd=root)
    assert junit.returncode == 0 and (root / "r.xml").read_text().startswith("<?xml")
    human = llmops("eval", "show", out["run_id"], cwd=root)
    assert "FAIL  #2 model: I am not sure." in human.stdout
    # The reason of the failed check is printed under the FAIL line.
    assert "icontains: " in human.stdout.split("FAIL  #2", 1)[1].splitlines()[1]
    exported = json.loads(
        llmops("eval", "export", "latest", "--format", "csv", "--json", cwd=root).stdout
    )
    assert exported["format"] == "csv" and exported["content"].startswith("case_index,")
    written = llmops("eval", "export", out["run_id"], "-o", "r.jsonl", "--json", cwd=root)
    assert json.loads(written.stdout)["bytes"] == (root / "r.jsonl").stat().st_size


def test_several_suites_run_one_after_another(project: tuple[Path, MockServer]) -> None:
    root, server = project
    write_suite(root, server.url, name="a.yaml")
    write_suite(root, server.url, name="b.yaml")
    done = llmops("eval", "run", "a.yaml", "b.yaml", "--limit", "2", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert [r["suite"] for r in out["runs"]] == ["a", "b"] and out["failed"] == []
    assert [r["cases"] for r in out["runs"]] == [2, 2]
    human = llmops("eval", "run", "a.yaml", "b.yaml", "--filter", "Peru", cwd=root)
    assert human.returncode == 0, human.stderr
    assert "2 suites:" in human.stdout and "options {'filter': 'Peru'}" in human.stdout
    resumed = llmops("eval", "run", "a.yaml", "b.yaml", "--resume", "eval-x", cwd=root)
    assert resumed.returncode == 2 and "--resume continues one run" in resumed.stderr
    # Every suite is checked before any runs: nothing is stored when a later one is bad.
    before = len(json.loads(llmops("eval", "list", "--json", cwd=root).stdout))
    bad = llmops("eval", "run", "a.yaml", "missing.yaml", "--json", cwd=root)
    assert bad.returncode == 2 and "missing.yaml" in bad.stderr
    none = llmops("eval", "run", "a.yaml", "b.yaml", "--filter", "Atlantis", cwd=root)
    assert none.returncode == 2 and "no case matches" in none.stderr
    assert len(json.loads(llmops("eval", "list", "--json", cwd=root).stdout)) == before
    for output, message in (("", "--output is empty"), (".", "is a directory"),
                            ("no/such/x.csv", "does not exist")):  # fmt: skip
        failed = llmops("eval", "export", "latest", "--format", "csv", "-o", output, cwd=root)
        assert failed.returncode == 2 and message in failed.stderr, failed.stderr
    assert llmops("eval", "export", "latest", "-o", "-", cwd=root).stdout.startswith("{")


def test_promptfoo_config_runs_unchanged(project: tuple[Path, MockServer]) -> None:
    root, server = project
    (root / "promptfooconfig.yaml").write_text(f"""
prompts: ["What is the capital of {{{{country}}}}?"]
providers:
  - id: openai:chat:scripted
    config: {{apiBaseUrl: "{server.url}", temperature: 0}}
defaultTest:
  assert: [{{type: icontains, value: "{{{{country}}}}"}}]
  metadata: {{source: atlas, topic: capitals}}
tests:
  - vars: {{country: France}}
    metadata: {{topic: europe}}
    assert: [{{type: contains-any, value: "Paris, Lyon"}}]
  - vars: {{country: Peru}}
    assert: [{{type: contains, value: Lima}}]
""")
    done = llmops("eval", "run", "promptfooconfig.yaml", "--json", cwd=root)
    assert done.returncode == 0, done.stderr
    out = json.loads(done.stdout)
    assert out["targets"][0]["pass_rate"] == 0.5
    shown = json.loads(llmops("eval", "show", out["run_id"], "--json", cwd=root).stdout)
    assert [r["passed"] for r in shown["results"]] == [True, False]
    assert [r["metadata"] for r in shown["results"]] == [  # promptfoo's metadata, merged
        {"source": "atlas", "topic": "europe"},
        {"source": "atlas", "topic": "capitals"},
    ]


@pytest.mark.parametrize(
    ("args", "code", "match"),
    [
        (("eval", "run", "missing.yaml"), 2, "no such suite file"),
        (("eval", "show", "eval-000000000000"), 2, "no eval run 'eval-000000000000'"),
        (("eval", "export", "eval-000000000000", "--format", "xml"), 2, "unknown export format"),
    ],
)
def test_bad_input(
    project: tuple[Path, MockServer], args: tuple[str, ...], code: int, match: str
) -> None:
    root, _ = project
    done = llmops(*args, cwd=root)
    assert done.returncode == code and match in done.stderr and done.stderr.count("\n") == 1


def test_a_dead_server_fails_the_run_and_the_gate(tmp_path: Path) -> None:
    import socket

    root = tmp_path / "proj"
    Workspace.init(root, examples=False).close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    write_suite(root, f"http://127.0.0.1:{port}/v1", extra="max_retries: 0\n")
    done = llmops("eval", "run", "suite.yaml", cwd=root)
    assert done.returncode == 1, done.stdout
    assert "connection failed" in done.stderr and "every case of target(s) model" in done.stderr
    run_id = json.loads(llmops("eval", "list", "--json", cwd=root).stdout)[0]["run_id"]
    gate = llmops("eval", "gate", run_id, "--json", cwd=root)
    assert gate.returncode == 1 and json.loads(gate.stdout)["ok"] is False
    allowed = llmops("eval", "gate", run_id, "--max-errors", "10", "--json", cwd=root)
    assert allowed.returncode == 1  # nothing graded still fails
    assert "no case was graded" in json.loads(allowed.stdout)["problems"][0]


def test_debug_is_accepted_anywhere(project: tuple[Path, MockServer]) -> None:
    root, _ = project
    for args in (
        ("--debug", "eval", "show", "eval-000000000000"),
        ("eval", "show", "eval-000000000000", "--debug"),
    ):
        done = llmops(*args, cwd=root)
        assert done.returncode == 2 and "Traceback" in done.stderr, done.stderr


def test_model_output_cannot_drive_the_terminal(tmp_path: Path) -> None:
    root = tmp_path / "proj"
    Workspace.init(root, examples=False).close()
    with MockServer(lambda body: "\x1b]0;pwned\x07\x1b[2JParis") as server:
        write_suite(root, server.url)
        assert llmops("eval", "run", "suite.yaml", cwd=root).returncode == 0
        shown = llmops("eval", "show", "latest", cwd=root).stdout
    assert "\x1b" not in shown and "\x07" not in shown and "\ufffd]0;pwned" in shown
