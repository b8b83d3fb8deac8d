"""What a hostile or careless user found, each kept fixed: keys that miss a step's code or
folder, steps that exit or print, non-JSON values, unnamed pipelines that collide, names that
escape, malformed references, and option combinations that were silently dropped."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from llmops import Workspace
from llmops.errors import InputError
from llmops.pipelines import PipelineError, load_pipeline, parse_pipeline


def cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "llmops", *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, check=False)  # fmt: skip


def write(folder: Path, module: str, pipeline: str, name: str = "pipeline.yaml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "hs.py").write_text(module, encoding="utf-8")
    (folder / name).write_text(pipeline, encoding="utf-8")
    return folder / name


def test_a_step_is_keyed_on_its_whole_module_and_folder(ws_root: Path) -> None:
    ws = Workspace.open(ws_root)
    module = "K = {k!r}\n\n\ndef helper():\n    return K\n\n\ndef go(ctx):\n    return {{'v': helper()}}\n"
    pipeline = "name: team\nsteps:\n  - {name: go, python: 'hs:go'}\n"
    path = write(ws_root / "t1", module.format(k="team1"), pipeline)
    assert ws.run_pipeline(path).step("go").outputs == {"v": "team1"}
    other = write(ws_root / "t2", module.format(k="team2"), pipeline)
    assert ws.run_pipeline(other).step("go").outputs == {"v": "team2"}  # not team1's result
    (ws_root / "t1" / "hs.py").write_text(module.format(k="edited"), encoding="utf-8")
    run = ws.run_pipeline(path)  # a constant the function uses changed: it reruns
    assert run.step("go").status == "ran" and run.step("go").outputs == {"v": "edited"}
    ws.close()


def test_steps_that_exit_print_or_return_nan(ws_root: Path) -> None:
    write(ws_root, """\
import sys

def bye(ctx):
    sys.exit(0)

def loud(ctx):
    print("hello from a step")
    return {"ok": True}

def nan(ctx):
    return {"v": float("nan")}

def boom(ctx):
    raise ValueError("boom\\nsecond line")
""", """\
steps:
  - {name: a, python: "hs:bye"}
  - {name: b, python: "hs:loud", needs: [a]}
  - {name: c, python: "hs:loud"}
  - {name: d, python: "hs:nan"}
  - {name: e, python: "hs:boom"}
""")  # fmt: skip
    done = cli("pipeline", "run", "--json", cwd=ws_root)
    assert done.returncode == 1, done.stderr
    out = json.loads(done.stdout)  # one JSON document: the step's print went to stderr
    assert "hello from a step" in done.stderr
    steps = {s["name"]: s for s in out["steps"]}
    assert steps["a"]["status"] == "failed" and steps["a"]["error"] == "SystemExit: 0"
    assert steps["b"]["status"] == "skipped" and steps["c"]["status"] == "ran"
    assert steps["d"]["status"] == "failed" and "not JSON" in steps["d"]["error"]
    assert steps["e"]["error"] == "ValueError: boom / second line"  # one line


def test_unnamed_pipelines_are_named_by_their_file(ws_root: Path) -> None:
    module = "def secret(ctx):\n    return {'x': 'from-pA'}\n\ndef public(ctx):\n    return {'x': 'from-pB'}\n\ndef use(ctx, got):\n    return {'got': got}\n"
    body = "steps:\n  - {{name: a, python: 'hs:{f}'}}\n  - {{name: b, python: 'hs:use', needs: [a], params: {{got: '${{a.x}}'}}}}\n"
    write(ws_root, module, body.format(f="secret"), "pA.yaml")
    (ws_root / "pB.yaml").write_text(body.format(f="public"), encoding="utf-8")
    ws = Workspace.open(ws_root)
    assert ws.run_pipeline("pA.yaml").pipeline == "pA"
    with pytest.raises(InputError, match="has not completed in any run of pipeline 'pB'"):
        ws.run_pipeline("pB.yaml", only="b")  # not pA's step a
    with pytest.raises(InputError, match="--force 'a': that step does not run in this run"):
        ws.run_pipeline("pA.yaml", only="b", force=("a",))
    with pytest.raises(InputError, match="--only '': the pipeline has no such step"):
        ws.run_pipeline("pA.yaml", only="")
    ws.close()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name: ../../escaped\nsteps: [{python: 'hs:f'}]\n", "pipeline name '../../escaped' must"),
        ("name: ''\nsteps: [{python: 'hs:f'}]\n", "pipeline name '' must"),
        (
            "steps: [{python: 'hs:f', params: {b: !!binary aGVsbG8=}}]\n",
            "params.b: a bytes is not a JSON value",
        ),
        ("steps: [{python: 'hs:f', params: {s: !!set {x, y}}}]\n", "params.s: a set is not"),
        ("steps: [{python: 'hs:f', params: {p: '${nope}'}}]\n", "has a '${' that is not"),
        ("steps: [{python: 'hs:f', params: {p: '${a.}'}}]\n", "has a '${' that is not"),
        ("steps: [{python: 'hs:nofunc'}]\n", "module 'hs' defines no function 'nofunc'"),
        ("steps: [{step: data, params: {path: d, format: bogus}}]\n", "format: Input should be"),
        ("steps: [{step: data, params: {path: d}}]\n", "'d' is not a regular file"),
    ],
)
def test_bad_values_are_found_when_validating(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "hs.py").write_text("def f(ctx):\n    return {}\n", encoding="utf-8")
    (tmp_path / "d").mkdir()
    with pytest.raises(PipelineError) as caught:
        parse_pipeline(text, path=tmp_path / "pipeline.yaml")
    assert message in str(caught.value)


def test_a_long_chain_validates_and_too_many_steps_are_refused(tmp_path: Path) -> None:
    (tmp_path / "hs.py").write_text("def f(ctx):\n    return {}\n", encoding="utf-8")
    chain = "".join(
        f"  - {{name: s{i}, python: 'hs:f'{f', needs: [s{i - 1}]' if i else ''}}}\n"
        for i in range(500)
    )
    (tmp_path / "chain.yaml").write_text("steps:\n" + chain, encoding="utf-8")
    p = load_pipeline(tmp_path / "chain.yaml")
    assert p.order[0] == "s0" and p.order[-1] == "s499"
    more = chain + "  - {name: extra, python: 'hs:f'}\n"
    with pytest.raises(PipelineError, match="at most 500 items"):
        parse_pipeline("steps:\n" + more, path=tmp_path / "pipeline.yaml")
