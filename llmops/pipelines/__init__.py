"""Pipelines: the whole main job as named steps with cached results.

``pipeline.yaml`` (:mod:`llmops.pipelines.spec`) names steps of built-in kinds
(:mod:`llmops.pipelines.steps`) or Python functions; :func:`run_pipeline`
(:mod:`llmops.pipelines.runner`) runs them in order and skips each step whose cache key
matches a completed one; runs are records (:mod:`llmops.pipelines.records`, ``ws.pipelines``).
"""

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
