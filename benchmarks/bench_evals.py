"""Eval harness benchmarks (issue: eval harness). Run: python benchmarks/bench_evals.py

Side by side in one run, against the library's OpenAI-compatible server in its own process
(`python -m llmops.evals.testing`, 50 ms latency per request):
  1. 1,000 cases, each one generation and one llm-rubric judge call, at concurrency 32: `llmops
     eval run` (a fresh CLI process, wall time) against the ideal 2,000 x 0.05 s / 32, and against
     promptfoo (`--promptfoo DIR` with node_modules/.bin/promptfoo) on the equivalent config;
  2. a cached rerun of the same 1,000 cases (CLI process wall time);
  3. peak RSS of a 100,000-case run (deterministic assertions, 0 ms latency) in a fresh process;
  4. parity: a promptfoo config with every supported assertion type over scripted outputs, run
     by promptfoo and by llmops; per-case verdicts must be identical.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

PF_ENV = {
    "PROMPTFOO_DISABLE_TELEMETRY": "1",
    "PROMPTFOO_DISABLE_UPDATE": "1",
    "PROMPTFOO_DISABLE_REMOTE_GENERATION": "1",
    "PROMPTFOO_DISABLE_SHARING": "1",
    "PROMPTFOO_DISABLE_REDTEAM_REMOTE_GENERATION": "1",
    "OPENAI_API_KEY": "sk-local",
    "PROMPTFOO_CACHE_ENABLED": "false",
}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(latency: float) -> tuple[subprocess.Popen[bytes], str]:
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llmops.evals.testing",
            "--port",
            str(port),
            "--latency",
            str(latency),
            "--judge-pass",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return proc, f"http://127.0.0.1:{port}/v1"
        except OSError:
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("server did not start")


def timed(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, float, str]:
    """Wall seconds, peak RSS in MiB of the whole process tree (GNU time), stdout."""
    started = time.perf_counter()
    wrapped = ["/usr/bin/time", "-f", "MAXRSS %M", *cmd] if Path("/usr/bin/time").exists() else cmd
    proc = subprocess.run(
        wrapped,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if proc.returncode not in (0, 100):  # promptfoo exits 100 when some tests fail
        raise SystemExit(f"{cmd[:3]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    rss = float("nan")
    for line in proc.stderr.splitlines():
        if line.startswith("MAXRSS "):
            rss = int(line.split()[1]) / 1024
    return seconds, rss, proc.stdout


def cases_file(path: Path, n: int) -> None:
    countries = ["France", "Spain", "Italy", "Japan", "Peru", "Chile", "Kenya", "Egypt"]
    with path.open("w") as f:
        for i in range(n):
            f.write(json.dumps({"vars": {"country": countries[i % 8], "n": i}}) + "\n")


def llmops_suite(folder: Path, url: str, *, judged: bool, n: int, concurrency: int) -> Path:
    cases_file(folder / f"cases-{n}.jsonl", n)
    judge = (
        f'judge: {{model: {{provider: openai, name: judge, api_base: "{url}"}}}}\n'
        if judged
        else ""
    )
    asserts = (
        "[{type: llm-rubric, value: names a city}]"
        if judged
        else "[{type: icontains, value: capital}, {type: length, value: {max: 500}}]"
    )
    path = folder / f"suite-{n}-{judged}.yaml"
    path.write_text(f"""targets:
  - name: m
    prompt: [{{role: user, content: "What is the capital of {{{{ country }}}}? (case {{{{ n }}}})"}}]
    model: {{provider: openai, name: m, api_base: "{url}"}}
cases_file: cases-{n}.jsonl
default_assert: {asserts}
concurrency: {concurrency}
{judge}""")
    return path


def promptfoo_config(folder: Path, url: str, n: int) -> Path:
    countries = ["France", "Spain", "Italy", "Japan", "Peru", "Chile", "Kenya", "Egypt"]
    tests = [{"vars": {"country": countries[i % 8], "n": i}} for i in range(n)]
    provider = {"id": "openai:chat:m", "config": {"apiBaseUrl": url, "temperature": 0}}
    config = {
        "prompts": ["What is the capital of {{country}}? (case {{n}})"],
        "providers": [provider],
        "defaultTest": {
            "options": {"provider": {"id": "openai:chat:judge", "config": {"apiBaseUrl": url}}},
            "assert": [{"type": "llm-rubric", "value": "names a city"}],
        },
        "tests": tests,
    }
    path = folder / "promptfooconfig.json"
    path.write_text(json.dumps(config))
    return path


def bench_speed(work: Path, pf_bin: Path | None, n: int) -> dict[str, Any]:
    server, url = start_server(0.05)
    try:
        ws = work / "ws"
        subprocess.run(
            [sys.executable, "-m", "llmops", "init", str(ws)], check=True, capture_output=True
        )
        suite = llmops_suite(ws, url, judged=True, n=n, concurrency=32)
        env = {"LLMOPS_WORKSPACE": str(ws)}
        cli = [sys.executable, "-m", "llmops", "eval", "run", str(suite), "--json"]
        first, rss, out = timed([*cli, "--no-cache"], ws, env)
        engine = json.loads(out)["seconds"]
        cached, _, out2 = timed(cli, ws, env)
        ideal = 2 * n * 0.05 / 32
        result: dict[str, Any] = {
            "cases": n,
            "ideal_s": ideal,
            "llmops_cli_s": first,
            "llmops_engine_s": engine,
            "llmops_rss_mib": rss,
            "ratio_to_ideal": first / ideal,
            "cached_rerun_cli_s": cached,
            "cached_rerun_engine_s": json.loads(out2)["seconds"],
            "cached_calls": json.loads(out2)["calls"],
        }
        if pf_bin is not None:
            config = promptfoo_config(work, url, n)
            pf_s, pf_rss, _ = timed(
                [
                    str(pf_bin),
                    "eval",
                    "-c",
                    str(config),
                    "-j",
                    "32",
                    "--no-cache",
                    "--no-table",
                    "--no-progress-bar",
                    "-o",
                    str(work / "pf-out.json"),
                ],
                work,
                PF_ENV,
            )
            result.update(promptfoo_s=pf_s, promptfoo_rss_mib=pf_rss, speedup=pf_s / first)
        return result
    finally:
        server.terminate()


def bench_memory(work: Path, n: int) -> dict[str, Any]:
    server, url = start_server(0.0)
    try:
        ws = work / "ws-mem"
        subprocess.run(
            [sys.executable, "-m", "llmops", "init", str(ws)], check=True, capture_output=True
        )
        suite = llmops_suite(ws, url, judged=False, n=n, concurrency=32)
        seconds, rss, out = timed(
            [sys.executable, "-m", "llmops", "eval", "run", str(suite), "--json"],
            ws,
            {"LLMOPS_WORKSPACE": str(ws)},
        )
        data = json.loads(out)
        return {
            "cases": n,
            "seconds": seconds,
            "peak_rss_mib": rss,
            "errors": data["errors"],
            "pass_rate": data["targets"][0]["pass_rate"],
        }
    finally:
        server.terminate()


PARITY_OUTPUTS = {
    "paris": "Paris",
    "sentence": "The capital of France is Paris.",
    "json": '{"city": "Paris", "population": 2100000}',
    "embedded": 'Here you go: {"city": "Paris"} -- enjoy',
    "number": "42",
    "spaced": " Paris ",
    "upper": "PARIS IS THE CAPITAL",
}
PARITY_ASSERTS = [
    {"type": "equals", "value": "Paris"},
    {"type": "contains", "value": "Paris"},
    {"type": "icontains", "value": "paris"},
    {"type": "contains-any", "value": ["Lyon", "Paris"]},
    {"type": "contains-all", "value": ["capital", "Paris"]},
    {"type": "regex", "value": "^[A-Z][a-z]+$"},
    {"type": "starts-with", "value": "The"},
    {"type": "is-json"},
    {"type": "contains-json"},
    {"type": "not-contains", "value": "Paris"},
]


def bench_parity(work: Path, pf_bin: Path) -> dict[str, Any]:
    from llmops.evals.testing import MockServer

    def respond(body: dict[str, Any]) -> str:
        key = body["messages"][-1]["content"].split("key=")[-1].strip()
        return PARITY_OUTPUTS[key]

    with MockServer(respond) as server:
        tests = [
            {"vars": {"key": key}, "assert": [a]} for key in PARITY_OUTPUTS for a in PARITY_ASSERTS
        ]
        config = {
            "prompts": ["Reply for key={{key}}"],
            "providers": [{"id": "openai:chat:m", "config": {"apiBaseUrl": server.url}}],
            "tests": tests,
        }
        folder = work / "parity"
        folder.mkdir()
        (folder / "promptfooconfig.yaml").write_text(json.dumps(config))
        timed(
            [
                str(pf_bin),
                "eval",
                "-c",
                str(folder / "promptfooconfig.yaml"),
                "--no-cache",
                "--no-table",
                "--no-progress-bar",
                "-o",
                str(folder / "out.json"),
            ],
            folder,
            PF_ENV,
        )
        pf = json.loads((folder / "out.json").read_text())["results"]["results"]
        pf_verdicts = {
            (
                r["vars"]["key"],
                r["testCase"]["assert"][0]["type"],
                json.dumps(r["testCase"]["assert"][0].get("value")),
            ): bool(r["success"])
            for r in pf
        }
        ws = folder / "ws"
        subprocess.run(
            [sys.executable, "-m", "llmops", "init", str(ws)], check=True, capture_output=True
        )
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "llmops",
                "eval",
                "run",
                str(folder / "promptfooconfig.yaml"),
                "--json",
            ],
            cwd=ws,
            env={**os.environ, "LLMOPS_WORKSPACE": str(ws)},
            capture_output=True,
            text=True,
            check=True,
        )
        run_id = json.loads(out.stdout)["run_id"]
        shown = subprocess.run(
            [sys.executable, "-m", "llmops", "eval", "show", run_id, "--json"],
            env={**os.environ, "LLMOPS_WORKSPACE": str(ws)},
            capture_output=True,
            text=True,
            check=True,
        )
        ours = {}
        for r in json.loads(shown.stdout)["results"]:
            test = tests[r["case_index"]]
            ours[
                (
                    test["vars"]["key"],
                    test["assert"][0]["type"],
                    json.dumps(test["assert"][0].get("value")),
                )
            ] = r["passed"]
    mismatches = [
        {"case": k, "promptfoo": pf_verdicts.get(k), "llmops": v}
        for k, v in ours.items()
        if pf_verdicts.get(k) != v
    ]
    return {"cases": len(ours), "compared": len(pf_verdicts), "mismatches": mismatches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--cases", type=int, default=1000)
    parser.add_argument("--memory-cases", type=int, default=100_000)
    parser.add_argument(
        "--promptfoo", default=None, help="Folder with node_modules/.bin/promptfoo."
    )
    parser.add_argument("--skip-memory", action="store_true")
    args = parser.parse_args()
    pf_bin = None
    if args.promptfoo:
        pf_bin = Path(args.promptfoo) / "node_modules" / ".bin" / "promptfoo"
        if not pf_bin.exists():
            raise SystemExit(f"no promptfoo at {pf_bin}: npm install promptfoo@0.121 there")
    report: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="llmops-bench-evals-") as tmp:
        work = Path(tmp)
        print(
            f"1-2. {args.cases} cases x (generation + judge), 50 ms latency, concurrency 32",
            flush=True,
        )
        report["speed"] = bench_speed(work, pf_bin, args.cases)
        print(json.dumps(report["speed"], indent=1), flush=True)
        if pf_bin is not None:
            print("4. parity with promptfoo", flush=True)
            report["parity"] = bench_parity(work, pf_bin)
            print(json.dumps(report["parity"], indent=1), flush=True)
        if not args.skip_memory:
            print(f"3. peak RSS for {args.memory_cases} cases", flush=True)
            report["memory"] = bench_memory(work, args.memory_cases)
            print(json.dumps(report["memory"], indent=1), flush=True)
        shutil.rmtree(work / "ws", ignore_errors=True)
    print(json.dumps(report))


if __name__ == "__main__":
    main()
