"""The README's walkthrough runs as written: every ``bash`` and ``python`` block, in order, in an
empty folder (blocks whose first line is ``# shape:`` show a command's general form and are
skipped). A README step that stops working fails here, not in a newcomer's terminal."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCK = re.compile(r"^```(bash|python)\n(.*?)^```", re.M | re.S)
_SETUP = ("bash scripts/demo.sh", "bash scripts/test.sh")  # the two setup commands


def walkthrough(text: str) -> list[tuple[str, str]]:
    """``(language, code)`` of every block the walkthrough runs, in order."""
    return [
        (lang, body)
        for lang, body in _BLOCK.findall(text)
        if not body.startswith("# shape:") and body.strip() not in _SETUP
    ]


def test_the_walkthrough_is_found_and_setup_and_shape_blocks_are_not_run() -> None:
    blocks = walkthrough(README.read_text(encoding="utf-8"))
    assert blocks[0][1].startswith("llmops init my-project")
    assert {lang for lang, _ in blocks} == {"bash", "python"}
    assert not any("# shape:" in body or "scripts/demo.sh" in body for _, body in blocks)


@pytest.mark.slow
def test_the_readme_runs_as_written(tmp_path: Path) -> None:
    pytest.importorskip("transformers")
    bin_dir = str(Path(sys.executable).parent)
    env = {k: v for k, v in os.environ.items() if not k.startswith("LLMOPS_")}
    env.update(
        PATH=f"{bin_dir}{os.pathsep}{env.get('PATH', '')}",
        HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", HF_DATASETS_OFFLINE="1",
        PYTHONWARNINGS="ignore",
    )  # fmt: skip
    where = tmp_path / ".cwd"
    where.write_text(str(tmp_path))
    try:
        _walk(where, env, tmp_path)
    finally:  # a backend `serve start --detach` left running (a block failed before stopping it)
        subprocess.run(["llmops", "serve", "stop", "--all"], cwd=where.read_text().strip(),
                       env=env, capture_output=True, check=False, timeout=60)  # fmt: skip


def _walk(where: Path, env: dict[str, str], tmp_path: Path) -> None:
    for n, (lang, body) in enumerate(walkthrough(README.read_text(encoding="utf-8")), 1):
        cwd = where.read_text().strip()
        if lang == "bash":
            # Background servers a block starts end with it, even when a command fails.
            script = (
                f"set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n"
                f"cd {cwd!r}\n{body}\npwd > {str(where)!r}\n"
            )
            command = ["bash", "-c", script]
        else:
            command = [sys.executable, "-c", body]
        code, out, err = _run(command, cwd=cwd, env=env, logs=tmp_path / f"block-{n}")
        assert code == 0, (
            f"README block {n} ({lang}) failed with exit {code}:\n{body}\n"
            f"--- stdout\n{out[-3000:]}\n--- stderr\n{err[-3000:]}"
        )


def _run(command: list[str], *, cwd: str, env: dict[str, str], logs: Path) -> tuple[int, str, str]:
    """Run ``command`` in a session of its own, output to files (a process it leaves behind can
    hold no pipe open), and kill whatever of it is left afterwards."""
    out, err = logs.with_suffix(".out"), logs.with_suffix(".err")
    with out.open("w") as stdout, err.open("w") as stderr:
        proc = subprocess.Popen(
            command, cwd=cwd, env=env, stdout=stdout, stderr=stderr, start_new_session=True
        )
        try:
            code = proc.wait(timeout=900)
        except subprocess.TimeoutExpired:
            code = -1
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    return code, out.read_text(errors="replace"), err.read_text(errors="replace")
