"""A canary's spec: the steps, the gates on errors, latency, a judge's verdicts and feedback,
and their statistics' settings (``canary.yaml``, or ``llmops canary start`` options)."""

from __future__ import annotations

import itertools
import math
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmops.errors import InputError

if TYPE_CHECKING:
    from llmops.evals.suite import ModelSpec

__all__ = ["CanarySpec", "parse_spec"]


class CanarySpec(BaseModel):
    """How a canary advances and when it is rolled back (defaults live here only)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    steps: list[float] = Field(default_factory=lambda: [5.0, 25.0, 50.0, 100.0])
    """Candidate weights (percent), increasing; the last one is usually 100."""
    min_requests: int = Field(default=200, ge=1)
    """Candidate requests a step needs before it can advance."""
    min_seconds: float = Field(default=60.0, ge=0)
    """Time a step needs before it can advance."""
    max_error_rate_increase: float = Field(default=0.02, ge=0, le=1)
    """Roll back once the candidate's error rate is surely (at ``alpha``) more than this above
    the stable arm's."""
    max_p95_increase: float = Field(default=0.5, ge=0)
    """Roll back once surely more than 5% of candidate requests are slower than the stable
    arm's p95 times (1 + this)."""
    min_p95_increase_ms: float = Field(default=5.0, ge=0)
    """Latency differences smaller than this never count (noise at millisecond latencies)."""
    alpha: float = Field(default=0.05, gt=0, lt=0.5)
    """False-alarm rate of the sequential tests, over the whole canary."""
    min_stable_requests: int = Field(default=20, ge=1)
    """Stable requests needed before the latency comparison starts."""
    judge_model: dict[str, Any] | None = None
    """The pairwise judge (an eval model spec: ``{"provider": "openai", "name": ...,
    "api_base": ...}``); with it, mirrored requests are judged and the win rate counts."""
    judge_rubric: str = "The answer is correct, helpful and follows the instructions."
    """What the judge compares the two answers on."""
    judge_method: Literal["generate", "likelihood"] = "generate"
    """How the judge gives its verdict (an eval judge's ``method``): ``likelihood`` scores
    the verdict words, for small local judges that cannot write one."""
    min_win_rate: float = Field(default=0.45, ge=0, le=1)
    """Roll back once the candidate's judged win rate (ties count half) is surely below this."""
    min_judged: int = Field(default=30, ge=1)
    """Judged pairs needed (over the whole canary) before a step can pass, with a judge."""
    judge_sample: float = Field(default=0.2, gt=0, le=1)
    """With a judge: the share of answered requests mirrored to the other arm for judging."""
    shadow_first: int = Field(default=0, ge=0)
    """Judged shadow pairs to collect, at weight 0, before the first live step (needs a
    judge); the live steps do not start when the candidate loses them."""
    strategy: Literal["steps", "thompson"] = "steps"
    """``thompson``: a bandit over two or more candidates at the first step's weight (Thompson
    sampling on ``reward``), then the winner goes on through the steps."""
    candidates: list[str] = Field(default_factory=list)
    """A bandit's candidates (model versions; set from ``candidate``)."""
    reward: Literal["judge", "feedback"] = "judge"
    """A bandit's reward: judged wins against stable (ties half), or feedback scores."""
    floor: float = Field(default=0.1, ge=0, le=0.5)
    """A bandit's least share of the candidate weight per candidate (exploration)."""
    win_probability: float = Field(default=0.95, gt=0.5, lt=1)
    """A bandit's winner: the candidate at least this likely to be the best."""
    max_feedback_drop: float | None = Field(default=None, ge=0, le=1)
    """Roll back once the candidate's mean feedback score is surely more than this below the
    stable arm's (None: feedback is reported, not tested)."""

    @field_validator("min_seconds", "max_p95_increase", "min_p95_increase_ms")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        return value

    @field_validator("judge_model")
    @classmethod
    def _judge(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is None:
            return None
        from llmops.evals.suite import ModelSpec

        return ModelSpec.model_validate(value).model_dump(mode="json", exclude_defaults=True)

    @model_validator(mode="after")
    def _shadow_needs_judge(self) -> CanarySpec:
        if self.shadow_first and self.judge_model is None:
            raise ValueError("shadow_first needs a judge_model to judge the shadow pairs")
        if self.judge_method == "likelihood":
            from llmops.evals.suite import JudgeSpec

            if self.judge_model is None:
                raise ValueError("judge_method 'likelihood' needs a judge_model")
            try:  # a provider that can score words
                JudgeSpec(model=self.judge, method="likelihood")
            except ValidationError as exc:
                why = exc.errors()[0]["msg"].removeprefix("Value error, ")
                raise ValueError(why.replace("judge.method", "judge_method")) from None
        if self.strategy == "thompson":
            if len(self.candidates) < 2:
                raise ValueError("strategy thompson needs two or more candidates")
            if self.reward == "judge" and self.judge_model is None:
                raise ValueError("a bandit rewarded by the judge needs a judge_model")
            if self.floor * len(self.candidates) > 1:
                raise ValueError(f"floor {self.floor} times {len(self.candidates)} candidates"
                                 " is more than the whole candidate weight")  # fmt: skip
            if self.shadow_first:
                raise ValueError("shadow_first works with one candidate, not a bandit")
        elif len(self.candidates) > 1:
            raise ValueError("two or more candidates need --strategy thompson")
        return self

    @property
    def judge(self) -> ModelSpec | None:
        """The judge's model spec, if the canary has one."""
        from llmops.evals.suite import ModelSpec

        return None if self.judge_model is None else ModelSpec.model_validate(self.judge_model)

    @property
    def tests(self) -> int:
        """How many sequential tests share ``alpha`` (a union bound)."""
        return 2 + (self.judge_model is not None) + (self.max_feedback_drop is not None)

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[float]) -> list[float]:
        if not steps:
            raise ValueError("a canary needs at least one step")
        if any(not math.isfinite(w) or not 0.01 <= w <= 100 for w in steps):
            raise ValueError("every step is a weight from 0.01 to 100")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise ValueError("steps must increase (e.g. 5,25,50,100)")
        return steps


def parse_spec(values: dict[str, Any]) -> CanarySpec:
    """A spec from options, every problem named at once.

    Raises:
        InputError: A value is out of range.
    """
    try:
        return CanarySpec(**values)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'spec'}:"
            f" {e['msg'].removeprefix('Value error, ')}"
            for e in exc.errors()
        )
        raise InputError(f"invalid canary spec: {problems}") from None
