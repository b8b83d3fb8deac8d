"""The same steps on existing orchestrators: a Prefect flow (run for real, in-process with
Prefect's local SQLite) and a Kubeflow Pipelines spec compiled through the kfp SDK."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from llmops import Workspace
from llmops.errors import InputError
from llmops.pipelines import load_pipeline
from llmops.pipelines.engines import compile_kfp
from tests.pipelines.test_runner import statuses


@pytest.fixture(scope="module", autouse=True)
def _stop_prefect_server() -> Iterator[None]:
    # Prefect stops its temporary server at exit and logs it to streams pytest has closed by
    # then; stopped here, while they are open
    yield
    if "prefect.server.api.server" in sys.modules:
        from prefect.server.api.server import SubprocessASGIServer

        for server in list(SubprocessASGIServer._instances.values()):
            server.stop()


def test_prefect_runs_each_step_as_a_cached_task(root: Path) -> None:
    pytest.importorskip("prefect")
    text = (root / "pipeline.yaml").read_text(encoding="utf-8")
    (root / "pipeline.yaml").write_text(text + """  - name: flaky
    python: mysteps:flaky
    params: {times: 1}
    retries: 1
  - name: broken
    python: mysteps:total
    needs: [make]
    params: {items: "${make.items}", fail: true}
  - name: after
    python: mysteps:side
    needs: [broken]
  - name: timeout
    python: mysteps:prefect_startup_timeout
""", encoding="utf-8")  # fmt: skip
    ws = Workspace.open(root)
    first = ws.run_pipeline(engine="prefect")  # Prefect imported already (importorskip)
    assert first.status == "failed" and first.options["engine"] == "prefect"
    assert statuses(first) == {"make": "ran", "total": "ran", "side": "ran", "flaky": "ran",
                               "broken": "failed", "after": "skipped", "timeout": "ran"}  # fmt: skip
    # the temporary server may take long to start on a busy machine: our default applies even
    # though Prefect read its settings before the run
    assert first.step("timeout").outputs == {"seconds": 120}
    assert first.step("total").outputs == {"total": 6}
    assert first.step("flaky").attempts == 2  # Prefect's retry
    assert "asked to fail" in str(first.step("broken").error)
    second = ws.run_pipeline(engine="prefect")
    assert {s.name: s.cached_from for s in second.steps if s.status == "cached"} == {
        "make": "prefect", "total": "prefect", "side": "prefect", "flaky": "prefect",
        "timeout": "prefect",
    }  # fmt: skip
    assert second.step("total").outputs == {"total": 6}
    forced = ws.run_pipeline(engine="prefect", force=("make",))
    assert forced.step("make").status == "ran" and forced.step("total").status == "cached"
    ws.close()


def test_a_missing_engine_is_a_one_line_install_hint(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "prefect", None)  # as if not installed
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name in ("prefect", "kfp") else real(name, *a))  # fmt: skip
    ws = Workspace.open(root)
    with pytest.raises(InputError, match="needs the 'prefect' package") as caught:
        ws.run_pipeline(engine="prefect")
    assert caught.value.hint == "pip install 'llmops[pipelines]'"
    assert ws.pipelines.list() == []  # nothing recorded
    with pytest.raises(InputError, match="needs the 'kfp' package"):
        compile_kfp(
            load_pipeline(root / "pipeline.yaml"), root / "x.yaml", image="i", workspace="/w"
        )
    with pytest.raises(InputError, match="unknown engine 'argo'"):
        ws.run_pipeline(engine="argo")
    ws.close()


def test_kfp_spec_has_one_task_per_step_in_order(root: Path, tmp_path: Path) -> None:
    pytest.importorskip("kfp")
    text = (root / "pipeline.yaml").read_text(encoding="utf-8")
    (root / "pipeline.yaml").write_text(text + """  - name: report_2
    python: mysteps:side
    needs: [total, side]
    retries: 3
""", encoding="utf-8")  # fmt: skip
    out = tmp_path / "spec.yaml"
    tasks = compile_kfp(load_pipeline(root / "pipeline.yaml"), out, image="reg/llmops:1",
                        workspace="/ws")  # fmt: skip
    assert tasks == ["make", "total", "side", "report_2"]
    spec = yaml.safe_load(out.read_text(encoding="utf-8"))
    assert spec["pipelineInfo"]["name"] == "demo"
    dag = spec["root"]["dag"]["tasks"]
    by_name = {t["taskInfo"]["name"]: t for t in dag.values()}
    assert sorted(by_name) == sorted(tasks)
    assert by_name["total"]["dependentTasks"] == ["step-make"]
    assert sorted(by_name["report-2" if "report-2" in by_name else "report_2"]["dependentTasks"]) == [
        "step-side", "step-total"
    ]  # fmt: skip
    assert by_name["report_2"]["retryPolicy"]["maxRetryCount"] == 3
    executors = spec["deploymentSpec"]["executors"]
    container = executors["exec-step-total"]["container"]
    assert container["image"] == "reg/llmops:1"
    assert container["command"] == ["llmops", "pipeline", "run", "pipeline.yaml", "--only", "total"]
    assert {"name": "LLMOPS_WORKSPACE", "value": "/ws"} in container["env"]
