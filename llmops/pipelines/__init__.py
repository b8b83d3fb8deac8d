"""Pipelines: the whole main job as named steps with cached results.

``pipeline.yaml`` (:mod:`llmops.pipelines.spec`) names steps of built-in kinds
(:mod:`llmops.pipelines.steps`) or Python functions; :func:`run_pipeline`
(:mod:`llmops.pipelines.runner`) runs them in order and skips each step whose cache key
matches a completed one; runs are records (:mod:`llmops.pipelines.records`, ``ws.pipelines``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from llmops.pipelines.records import PipelineRunRecord, Pipelines, StepRecord
    from llmops.pipelines.runner import run_pipeline
    from llmops.pipelines.spec import Pipeline, PipelineError, load_pipeline, parse_pipeline
    from llmops.pipelines.steps import StepContext, StepFailed

__all__ = [
    "Pipeline",
    "PipelineError",
    "PipelineRunRecord",
    "Pipelines",
    "StepContext",
    "StepFailed",
    "StepRecord",
    "load_pipeline",
    "parse_pipeline",
    "run_pipeline",
]

# Names load on first use: `pipeline list` reads records and needs neither the runner nor the
# step kinds (each with its own imports).
_LAZY = {
    "PipelineRunRecord": "records",
    "Pipelines": "records",
    "StepRecord": "records",
    "run_pipeline": "runner",
    "Pipeline": "spec",
    "PipelineError": "spec",
    "load_pipeline": "spec",
    "parse_pipeline": "spec",
    "StepContext": "steps",
    "StepFailed": "steps",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'llmops.pipelines' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f"llmops.pipelines.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
