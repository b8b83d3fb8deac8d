"""Promotion policies: what evidence a model version needs before a guarded alias moves to it.

One YAML file per model in ``policies/`` (file name = model name), validated like recipes: every
problem at once, with lines. A policy guards named aliases; a guarded alias moves only through
``llmops models promote``, which checks the conditions:

.. code-block:: yaml

    guards: [production, staging]
    evals:                               # each needs an eval run of this exact version (digest)
      - {suite: pirate-style, metric: pass_rate, min: 0.5, beat_current: true, significance: 0.05}
    approvals: {count: 1, approvers: [alice, bob], allow_self: false}
    max_age_days: 30                     # evidence older than this does not count
    require_kind: adapter                # only adapters ...
    require_base_model: smollm2-135m-instruct   # ... of this base model
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from llmops._yamldoc import YamlSyntaxError, parse_yaml, problems, read_document, summarize
from llmops.errors import PolicyError
from llmops.refs import check_label

__all__ = ["ApprovalRule", "EvalCondition", "Policy", "load_policy", "parse_policy"]

MAX_POLICY_BYTES = 200_000


class _Spec(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class EvalCondition(_Spec):
    """``evals[]``: one suite's result the version must reach."""

    suite: str = Field(min_length=1)
    """The suite's name (its file name without ``.yaml``)."""
    metric: Literal["pass_rate", "mean_score"] = "pass_rate"
    min: float = Field(default=0.0, ge=0, le=1)
    """The metric of this version's target, at least this."""
    beat_current: bool = False
    """Also better than the alias's current holder over the same cases: paired bootstrap
    p-value of the per-case score differences below ``significance``, mean difference > 0."""
    significance: float = Field(default=0.05, gt=0, lt=1)


class ApprovalRule(_Spec):
    """``approvals:``: people who must approve a promotion request."""

    count: int = Field(default=1, ge=0, le=100)
    approvers: list[str] | None = None
    """Who may approve (default: anyone); identities are ``LLMOPS_USER``, else the OS user."""
    allow_self: bool = False
    """Whether the person who requested the promotion may approve it."""


class Policy(_Spec):
    """A model's promotion policy."""

    guards: list[str] = Field(min_length=1)
    """Aliases that move only through ``promote``."""
    evals: list[EvalCondition] = Field(default_factory=list)
    approvals: ApprovalRule | None = None
    max_age_days: float | None = Field(default=None, gt=0)
    require_kind: Literal["base-model", "adapter", "merged-model"] | None = None
    require_base_model: str | None = None
    """An adapter's base model (by name): the version's lineage must name it."""

    @model_validator(mode="after")
    def _possible(self) -> Policy:
        rule = self.approvals
        if rule is not None and rule.approvers is not None and rule.count > len(rule.approvers):
            raise ValueError(
                f"approvals.count {rule.count} is more than the {len(rule.approvers)} approvers"
                " listed: no promotion could ever pass"
            )
        return self

    @field_validator("guards")
    @classmethod
    def _aliases(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("an alias is listed twice")
        for alias in value:
            try:
                check_label(alias)
            except Exception as exc:  # InvalidNameError: reported with the other problems
                raise ValueError(str(exc)) from None
        return value

    def digest(self) -> str:
        """``sha256:`` of the policy's canonical JSON: recorded with every decision."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"))
        return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def parse_policy(text: str, *, path: str = "<policy>") -> Policy:
    """Validate policy YAML text.

    Raises:
        PolicyError: Malformed or invalid; every problem is listed, the first with its line.
    """
    try:
        data, root = parse_yaml(text)
    except YamlSyntaxError as exc:
        p = exc.problem
        raise PolicyError(p.message, path=path, line=p.line, column=p.column) from None
    if not isinstance(data, dict):
        raise PolicyError("expected a mapping with at least 'guards'", path=path, line=1)
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        first, message = summarize(problems(exc, root, Policy))
        raise PolicyError(message, path=path, line=first.line, column=first.column) from None


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file.

    Raises:
        PolicyError: The file is missing, unreadable or invalid.
    """
    p = Path(path)
    text = read_document(
        p, PolicyError, max_bytes=MAX_POLICY_BYTES, what="policy file",
        too_big_hint="a policy is a short YAML file",
    )  # fmt: skip
    return parse_policy(text, path=str(p))
