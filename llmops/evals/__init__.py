"""Evaluation: suites, providers, scorers, LLM judges, statistics, cached async execution,
stored runs with comparison, CI gates and exports, promptfoo configs, and an offline
OpenAI-compatible server for tests.

Heavy libraries (aiohttp, litellm, transformers) load only when a run needs them.
"""

from llmops.evals.providers import PROVIDERS, Completion, ProviderError, Request
from llmops.evals.records import EvalRunRecord
from llmops.evals.results import EvalRuns, GateReport
from llmops.evals.runner import EvalOutcome, run_suite
from llmops.evals.scorers import MODEL_GRADED, SCORERS, ScoreResult
from llmops.evals.suite import Assertion, Case, JudgeSpec, ModelSpec, Suite, Target, load_suite

__all__ = [
    "MODEL_GRADED",
    "PROVIDERS",
    "SCORERS",
    "Assertion",
    "Case",
    "Completion",
    "EvalOutcome",
    "EvalRunRecord",
    "EvalRuns",
    "GateReport",
    "JudgeSpec",
    "ModelSpec",
    "ProviderError",
    "Request",
    "ScoreResult",
    "Suite",
    "Target",
    "load_suite",
    "run_suite",
]
