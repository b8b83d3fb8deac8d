"""Typed eval records: what the CLI, the dashboard and promotion gates read.

A run's summary is stored as JSON on its ``eval_run`` row and read back as :class:`RunSummary`
(pydantic, each field documented); results are :class:`ResultRow`; a CI gate's outcome is a
:class:`GateReport`. The JSON forms (``eval show --json``, exports) are derived from these and
carry ``format_version`` and the llmops version at the top level of the run record.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict

from llmops.evals.stats import Interval, Paired

__all__ = [
    "EvalStatus",
    "ModelIdentity",
    "PairwiseSummary",
    "ResultRow",
    "RunSummary",
    "TargetComparison",
    "TargetSummary",
]

EvalStatus = Literal["running", "completed", "failed"]
"""``running`` (also a killed run: resume it), ``completed`` or ``failed``."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)

    def to_json(self) -> dict[str, Any]:
        """The stored form: only the fields that were set (absent means not applicable)."""
        return self.model_dump(mode="json", exclude_unset=True)


class TargetSummary(_Model):
    """One target's numbers in a run."""

    name: str
    """The target's name in the suite."""
    cases: int
    """Cases with a result for this target."""
    graded: int
    """Cases graded (not errored)."""
    errors: int
    """Cases that errored: no answer, or a check could not decide."""
    pass_rate: float | None
    """Share of graded cases that passed (None: nothing was graded)."""
    pass_rate_ci_low: float | None = None
    """Bootstrap 95% interval of the pass rate."""
    pass_rate_ci_high: float | None = None
    mean_score: float | None = None
    """Mean weighted assertion score of graded cases."""
    ci_low: float | None = None
    """Bootstrap 95% interval of the mean score."""
    ci_high: float | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    """USD, from the model specs' prices or litellm's."""
    cached: int = 0
    """Answers served from the response cache."""
    latency_ms_p50: float | None = None
    """Median latency of fresh (uncached) calls."""
    wins: int | None = None
    """Pairwise suites: cases this target won."""
    ties: int | None = None
    """Pairwise suites: ties (including inconsistent verdicts)."""
    position_consistency: float | None = None
    """Pairwise suites: share of verdicts that agreed in both presentation orders."""


class TargetComparison(_Model):
    """Target ``b`` against target ``a`` over the cases both graded (paired)."""

    a: str
    b: str
    n: int
    """Cases in the comparison."""
    mean_a: float
    mean_b: float
    diff: float
    """Mean paired difference of scores, ``b - a``."""
    diff_ci_low: float
    diff_ci_high: float
    p_bootstrap: float
    """Paired bootstrap p-value of no difference."""
    p_sign: float
    """Exact sign test p-value."""
    wins: int
    """Cases where ``b`` scored higher."""
    losses: int
    ties: int
    win_rate: float | None = None
    """``b``'s wins over all cases, ties as half."""

    def paired(self) -> Paired:
        """The statistics as :class:`~llmops.evals.stats.Paired` (for its ``verdict()``)."""
        return Paired(
            n=self.n,
            mean_a=self.mean_a,
            mean_b=self.mean_b,
            diff=Interval(self.diff, self.diff_ci_low, self.diff_ci_high),
            p_bootstrap=self.p_bootstrap,
            p_sign=self.p_sign,
            wins=self.wins,
            losses=self.losses,
            ties=self.ties,
        )


class PairwiseSummary(_Model):
    """A pairwise suite's judged comparisons of its two targets."""

    a: str
    b: str
    judged: int
    """Cases with a verdict."""
    judge_errors: int
    """Cases whose judge gave no usable verdict."""
    wins: dict[str, int]
    ties: int
    win_rate_b: float | None
    p_sign: float


class ModelIdentity(_Model):
    """Exactly which model a target used: what promotion gates match evidence on."""

    provider: str
    name: str
    """The model as the suite names it."""
    ref: str | None = None
    """``name@version`` of the artifact it resolved to (local models)."""
    digest: str | None = None
    """Content digest of the model's files (local models)."""
    adapter: str | None = None
    adapter_ref: str | None = None
    adapter_digest: str | None = None
    api_base: str | None = None
    """The endpoint (served models), credentials never included."""


class RunSummary(_Model):
    """Everything a finished run computed."""

    targets: list[TargetSummary]
    comparisons: list[TargetComparison] | None = None
    """Every other target against the first (runs with two or more targets)."""
    pairwise: PairwiseSummary | None = None
    position_consistency: float | None = None
    wins: dict[str, int] | None = None
    ties: int | None = None
    judge_variance: dict[str, dict[str, float]] | None = None
    """Per target: spread of repeated judge samples (panels, epochs)."""
    calibration: dict[str, dict[str, Any]] | None = None
    """Judge agreement with human labels: ``single`` and/or ``pairwise``."""

    def target(self, name: str) -> TargetSummary:
        """One target's summary.

        Raises:
            KeyError: No such target.
        """
        for t in self.targets:
            if t.name == name:
                return t
        raise KeyError(name)


class ResultRow(_Model):
    """One case times one target."""

    case_index: int
    """Position of the case in the suite (from 0)."""
    case_id: str | None
    target: str
    vars: dict[str, Any]
    output: str
    """The answer (cut at 1,000,000 characters, with a note)."""
    passed: bool | None
    """None: the case errored (see ``error``)."""
    score: float | None
    error: str | None
    assertions: list[dict[str, Any]]
    """Per assertion: type, passed, score, reason, and a judge's samples and replies."""
    prompt_tokens: int
    completion_tokens: int
    cost: float
    latency_ms: float
    cached: bool
    human: str | None
    """A person's label, for judge calibration."""


def finite(value: float | None) -> float | None:
    """``value``, or None for NaN (statistics of nothing)."""
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value
