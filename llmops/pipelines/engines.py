"""Existing orchestrators for the same steps: a Prefect flow here, Kubeflow Pipelines at scale.

- ``prefect``: the run is a Prefect flow and each step a Prefect task whose cache key is the
  step's key (scoped to the workspace's registry; Prefect decides what is reused, with its
  results stored as JSON); retries are Prefect's. Without ``PREFECT_API_URL`` Prefect runs
  in-process with its local SQLite, under the workspace (``.llmops/prefect``) unless
  ``PREFECT_HOME`` says otherwise, so nothing else needs to run.
- ``kfp``: :func:`compile_kfp` writes a Kubeflow Pipelines spec through the ``kfp`` SDK with one
  container task per step, each calling ``llmops pipeline run --only STEP`` in an image that has
  llmops and the workspace (the steps share the registry database and artifact store, as every
  llmops process does).
"""

from __future__ import annotations

import hashlib
import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.errors import InputError

if TYPE_CHECKING:
    from llmops.pipelines.runner import Executor, Outcome, _Plan
    from llmops.pipelines.spec import Pipeline
    from llmops.workspace import Workspace

__all__ = ["ENGINES", "compile_kfp", "with_prefect"]

ENGINES = ("local", "prefect")


def _require(module: str, what: str) -> None:
    import importlib.util

    if importlib.util.find_spec(module) is None:
        raise InputError(
            f"{what} needs the {module!r} package, which is not installed",
            hint="pip install 'llmops[pipelines]'",
        )


def _prefect_settings(ws: Workspace) -> dict[Any, Any]:
    """Prefect's home in the workspace, quiet logs, no telemetry and a patient temporary server,
    unless the user chose otherwise: set in the environment (for a Prefect imported after this)
    and returned as defaults of Prefect's settings for the flow (for one imported before, as in
    a notebook, which has read its environment already)."""
    values = {
        "PREFECT_HOME": str(ws.state_dir / "prefect"),
        "PREFECT_LOGGING_LEVEL": "WARNING",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_LOGGING_TO_API_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": str(STARTUP_TIMEOUT_S),
    }
    for name, value in values.items():
        os.environ.setdefault(name, value)
    import prefect.settings

    return {getattr(prefect.settings, name): value for name, value in values.items()}


STARTUP_TIMEOUT_S = 120
"""How long Prefect's temporary server may take to start: 20 s (Prefect's default) is not enough
on a busy 2-core machine, where starts of 25 s and more were seen."""


def with_prefect(ws: Workspace, pipeline: Pipeline, body: Callable[[Executor], str]) -> str:
    """Run ``body`` (the step loop) inside a Prefect flow, executing each step as a task.

    Raises:
        InputError: Prefect is not installed.
    """
    _require("prefect", "--engine prefect")
    defaults = _prefect_settings(ws)
    from prefect import flow, task

    from llmops.pipelines.runner import Outcome, _error

    scope = ws.db_url_display

    def execute(plan: _Plan, forced: bool, started: Callable[[], None]) -> Outcome:
        started()
        attempts = [0]
        # one Prefect home may serve several workspaces: their keys must not meet
        scoped = hashlib.sha256(f"{scope}\n{plan.key}".encode()).hexdigest()
        key = f"llmops-{scoped}"

        def run_step() -> dict[str, Any]:
            attempts[0] += 1
            return plan.run()

        def submit(refresh: bool) -> Any:
            step_task = task(
                name=plan.step.id, cache_key_fn=lambda *_: key, retries=plan.step.retries,
                persist_result=True, result_serializer="json", refresh_cache=refresh or None,
            )(run_step)  # fmt: skip
            return step_task(return_state=True)

        state = submit(forced)
        if state.is_completed() and attempts[0] == 0 and not plan.still_holds(state.result()):
            state = submit(True)  # Prefect's cached outputs no longer hold (a server gone)
        if state.is_completed():
            outputs = state.result()
            cached = state.name == "Cached" or attempts[0] == 0
            return Outcome(dict(outputs or {}), attempts=attempts[0],
                           cached_from="prefect" if cached else None)  # fmt: skip
        exc = state.result(raise_on_failure=False)
        error = _error(exc) if isinstance(exc, BaseException) else str(state.message)
        return Outcome(None, error=error, attempts=attempts[0])

    @flow(name=f"llmops-{pipeline.name}", validate_parameters=False, log_prints=False)
    def pipeline_flow() -> str:
        return body(execute)

    from prefect.settings import temporary_settings

    with temporary_settings(set_defaults=defaults):
        return str(pipeline_flow())


def compile_kfp(pipeline: Pipeline, output: Path, *, image: str, workspace: str) -> list[str]:
    """Write a Kubeflow Pipelines spec (YAML) for ``pipeline``: one container task per step,
    ordered by ``needs``. Returns the task names.

    Args:
        image: The container image each task runs (llmops installed, the workspace inside).
        workspace: The workspace's path inside the image (``LLMOPS_WORKSPACE``).

    Raises:
        InputError: The kfp SDK is not installed.
    """
    _require("kfp", "pipeline compile --to kfp")
    from kfp import compiler, dsl

    components = {}
    for name in pipeline.order:
        spec = dsl.ContainerSpec(
            image=image, command=["llmops", "pipeline", "run", pipeline.path.name, "--only", name]
        )

        def component(spec: Any = spec) -> Any:
            return spec

        # kfp reads the signature: no inputs, a container spec out (this module's annotations
        # are strings, which kfp would take for artifact types)
        component.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            return_annotation=dsl.ContainerSpec
        )
        component.__annotations__ = {"return": dsl.ContainerSpec}
        component.__name__ = "step-" + "".join(c if c.isalnum() else "-" for c in name).lower()
        components[name] = (pipeline.step(name), dsl.container_component(component))

    def kfp_pipeline():  # type: ignore[no-untyped-def]  # kfp reads its (empty) annotations
        tasks: dict[str, Any] = {}
        for name in pipeline.order:
            step, component = components[name]
            t = component()
            t.set_display_name(name)
            t.set_env_variable("LLMOPS_WORKSPACE", workspace)
            t.set_caching_options(False)  # llmops' own keys decide what is reused
            if step.retries:
                t.set_retry(num_retries=step.retries)
            for need in step.needs:
                t.after(tasks[need])
            tasks[name] = t

    described = dsl.pipeline(
        name=pipeline.name, description=pipeline.spec.description or pipeline.name
    )(kfp_pipeline)
    compiler.Compiler().compile(pipeline_func=described, package_path=str(output))
    return list(pipeline.order)
