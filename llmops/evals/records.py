"""Typed eval records: what the CLI, the dashboard and promotion gates read.

A run's summary is stored as JSON on its ``eval_run`` row and read back as :class:`RunSummary`
(pydantic, each field documented); results are :class:`ResultRow`; a CI gate's outcome is a
:class:`GateReport`. The JSON forms (``eval show --json``, exports) are derived from these and
carry ``format_version`` and the llmops version at the top level of the run record.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict

from llmops._display import Display, html_table, short
from llmops._record import versioned
from llmops.evals.stats import Interval, Paired

__all__ = [
    "EvalRunRecord",
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
    _repr_fields: ClassVar[tuple[str, ...]] = ()

    def to_json(self) -> dict[str, Any]:
        """The stored form: only the fields that were set (absent means not applicable)."""
        return self.model_dump(mode="json", exclude_unset=True)

    def _shown(self) -> dict[str, Any]:
        names = self._repr_fields or tuple(type(self).model_fields)
        return {n: getattr(self, n) for n in names if getattr(self, n, None) is not None}

    def __repr__(self) -> str:
        parts = ", ".join(f"{k}={short(v)}" for k, v in self._shown().items())
        return f"{type(self).__name__}({parts})"

    def _repr_html_(self) -> str:
        rows = [{"field": k, "value": v} for k, v in self._shown().items()]
        return html_table(rows, title=type(self).__name__)

    def __str__(self) -> str:
        return repr(self)


class TargetSummary(_Model):
    """One target's numbers in a run."""

    _repr_fields = ("name", "cases", "errors", "pass_rate", "mean_score", "ci_low", "ci_high")

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

    _repr_fields = ("a", "b", "n", "diff", "diff_ci_low", "diff_ci_high", "p_bootstrap", "p_sign")

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
    model_version: str | None = None
    """``name@version`` the suite declared the endpoint serves (``model_version:``)."""
    model_version_digest: str | None = None


class RunSummary(_Model):
    """Everything a finished run computed."""

    _repr_fields = ("targets", "comparisons", "pairwise")

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

    def __repr__(self) -> str:
        targets = ", ".join(
            f"{t.name}: pass {short(t.pass_rate)}, score {short(t.mean_score)}"
            for t in self.targets
        )
        verdicts = "; ".join(c.paired().verdict(a=c.a, b=c.b) for c in self.comparisons or [])
        return f"RunSummary({targets}{'; ' + verdicts if verdicts else ''})"

    def _repr_html_(self) -> str:
        rows = [t.model_dump(exclude_none=True) for t in self.targets]
        verdicts = "".join(
            f"<p>{html.escape(c.paired().verdict(a=c.a, b=c.b))}</p>"
            for c in self.comparisons or []
        )
        return html_table(rows, title="RunSummary") + verdicts


class ResultRow(_Model):
    """One case times one target."""

    case_index: int
    """Position of the case in the suite (from 0)."""
    case_id: str | None
    target: str
    vars: dict[str, Any]
    metadata: dict[str, Any] = {}
    """The case's metadata (tags, topic, source)."""
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


FORMAT_VERSION = 1
"""Version of the eval run record's JSON form (``eval show --json``, exports)."""


@dataclass(slots=True, kw_only=True, repr=False)
class EvalRunRecord(Display):
    """A snapshot of one eval run."""

    _repr_fields = ("run_id", "status", "suite_name", "cases", "errors", "targets", "started_at")

    run_id: str
    suite_name: str
    suite_path: str
    suite_digest: str
    status: EvalStatus
    targets: list[str]
    summary: dict[str, Any] | None
    """The stored summary (see :attr:`summary_model` for its typed form)."""
    cases: int
    errors: int
    created_by: str
    started_at: datetime
    ended_at: datetime | None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per target: the exact model it used (:class:`~llmops.evals.records.ModelIdentity`)."""
    options: dict[str, Any] = field(default_factory=dict)
    """What the run was asked for: ``no_cache`` (answers were not read from the cache),
    ``filter``, ``limit``, ``repeat``."""

    @property
    def summary_model(self) -> RunSummary | None:
        """The summary, typed (None until the run finished)."""
        return None if self.summary is None else RunSummary.model_validate(self.summary)

    @property
    def model_identities(self) -> dict[str, ModelIdentity]:
        """Per target: the exact model it used, typed."""
        return {t: ModelIdentity.model_validate(m) for t, m in self.models.items()}

    def to_json(self) -> dict[str, Any]:
        """The ``eval run`` contract: run_id, cases, errors, targets (with statistics)."""
        summary = self.summary or {}
        return versioned(
            {
                "run_id": self.run_id,
                "suite": self.suite_name,
                "suite_path": self.suite_path,
                "suite_digest": self.suite_digest,
                "status": self.status,
                "cases": self.cases,
                "errors": self.errors,
                "targets": [
                    {**t, "model": self.models.get(t["name"])}
                    for t in summary.get("targets", [{"name": t} for t in self.targets])
                ],
                **{k: v for k, v in summary.items() if k != "targets"},
                "models": self.models,
                "options": self.options,
                "created_by": self.created_by,
                "started_at": self.started_at.isoformat(),
                "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            },
            FORMAT_VERSION,
        )

    def flat(self) -> dict[str, Any]:
        """One row for listings' DataFrames: the run's fields, then per target
        ``pass_rate.<t>``, ``mean_score.<t>``, ``errors.<t>`` and ``model.<t>``."""
        out: dict[str, Any] = {
            "run_id": self.run_id, "status": self.status, "suite": self.suite_name,
            "suite_path": self.suite_path, "suite_digest": self.suite_digest,
            "cases": self.cases, "errors": self.errors, "created_by": self.created_by,
            "started_at": self.started_at, "ended_at": self.ended_at,
        }  # fmt: skip
        for t in (self.summary or {}).get("targets", []):
            for key in ("pass_rate", "mean_score", "errors"):
                out[f"{key}.{t['name']}"] = t.get(key)
        for name, model in self.models.items():
            adapter = model.get("adapter_ref") or model.get("adapter")
            out[f"model.{name}"] = model.get("ref") or model.get("name")
            if adapter:
                out[f"adapter.{name}"] = adapter
        return out
