"""The notebooks in examples/ run top to bottom in a real kernel (each on a fresh workspace,
on CPU), and are kept in git without outputs."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NOTEBOOKS = sorted(EXAMPLES.glob("*.ipynb"))
SHOWN = {  # what each notebook's outputs must show
    "01-prompts": ["('summarize', 1, True)", "+You are a careful assistant. Summarize faithfully; "
                   "never add facts. Prefer short sentences."],
    "02-data-and-training": ["(True, 50, [])", "'tiny-pirate-lora@1'", "completed"],
    "03-artifacts": ["(False, 'my-model@1')", "(64, 256)", "VerifyReport(problems=[]"],
    "04-evals": ["'pass_to_fail': 1", "[(2, 'The capital of Peru is Lima.', 'I am not sure.')]",
                 "south-america", "brief: pass rate 0.750 is below the minimum 0.9"],
    "05-registry": ["'1 approval(s) needed", "PromotionVerdict(ref='support-lora@1', "
                    "alias='production', promoted=True"],
    "06-serving-and-canary": ["('stable', 'stable answer')", "('promoted',", "'promote'"],
    "07-pipelines": ["('count', 'cached', 'pipe-", "('count', 'ran', {'words': 6})"],
}  # fmt: skip


def test_every_stage_has_a_notebook() -> None:
    names = [p.stem for p in NOTEBOOKS]
    assert sorted(SHOWN) == names
    assert names == ["01-prompts", "02-data-and-training", "03-artifacts", "04-evals",
                     "05-registry", "06-serving-and-canary", "07-pipelines"]  # fmt: skip


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_stored_without_outputs(path: Path) -> None:
    nb = json.loads(path.read_text(encoding="utf-8"))
    for cell in nb["cells"]:
        if cell["cell_type"] == "code":
            assert cell["outputs"] == [] and cell["execution_count"] is None, path.name


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("transformers")
    spec = tmp_path / "jupyter" / "kernels" / "llmops-examples"
    spec.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (spec / "kernel.json").write_text(json.dumps({"argv": argv, "display_name": "llmops",
                                                 "language": "python"}))  # fmt: skip
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    for name in [k for k in os.environ if k.startswith("LLMOPS_")]:
        monkeypatch.delenv(name)  # the notebook's own workspace, database and store
    monkeypatch.setenv("LLMOPS_EXAMPLE_WORKSPACE", str(tmp_path))
    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(nb, kernel_name="llmops-examples", timeout=300,
                                     resources={"metadata": {"path": str(tmp_path)}})  # fmt: skip
    client.execute()
    errors = [o for c in nb.cells for o in c.get("outputs", []) if o["output_type"] == "error"]
    assert errors == []
    shown = "\n".join(
        str(o.get("text") or o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        for o in c.get("outputs", [])
    )
    for expected in SHOWN[path.stem]:
        assert expected in shown, (expected, shown[-3000:])
