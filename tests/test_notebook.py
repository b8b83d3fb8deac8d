"""The notebook face, in a real Jupyter kernel: progress is an output that updates in place
(no carriage returns or escape codes in the cell), and results render as HTML tables."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from llmops import Workspace
from llmops.evals.testing import MockServer
from tests.evals.conftest import default_responder, write_suite

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")


def _kernel(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A kernelspec running this interpreter (PATH may name another python)."""
    spec = tmp_path / "jupyter" / "kernels" / "llmops-test"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "llmops test", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))


def test_a_notebook_shows_progress_in_place_and_html_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _kernel(tmp_path, monkeypatch)
    root = tmp_path / "proj"
    Workspace.init(root, examples=False).close()
    with MockServer(default_responder) as server:
        suite = write_suite(root, server.url)
        cells = [
            f"from llmops import Workspace\nws = Workspace.open({str(root)!r})",
            f"outcome = ws.evaluate({str(suite)!r})\noutcome",
            "ws.eval_runs.list()",
            "ws.eval_runs",
        ]
        nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
        nbclient.NotebookClient(nb, kernel_name="llmops-test", timeout=120).execute()
    evaluate, listing, runs = nb.cells[1].outputs, nb.cells[2].outputs, nb.cells[3].outputs
    progress = [o for o in evaluate if o["output_type"] == "display_data"]
    assert progress, evaluate
    assert "4/4 cases" in progress[-1]["data"]["text/plain"]  # updated to the last state
    streams = "".join(o.get("text", "") for c in nb.cells for o in c.outputs)
    assert "\r" not in streams and "\x1b" not in streams
    (result,) = [o for o in evaluate if o["output_type"] == "execute_result"]
    assert "<table>" in result["data"]["text/html"] and "pass_rate" in result["data"]["text/html"]
    assert "<td>completed</td>" in listing[0]["data"]["text/html"]
    assert "EvalRuns(1 run(s)" in runs[0]["data"]["text/plain"]
