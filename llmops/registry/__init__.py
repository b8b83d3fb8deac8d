"""The model registry: model versions (artifact versions of a model kind) with promotion
policies, eval evidence by digest, approvals, rollback, semantic versions and an event outbox
delivered to webhooks."""

from llmops.registry.models import ModelRegistry
from llmops.registry.policy import ApprovalRule, EvalCondition, Policy, load_policy
from llmops.registry.records import (
    ApprovalResult,
    Condition,
    ModelSummary,
    ModelVersionInfo,
    PromotionVerdict,
    RollbackResult,
)

__all__ = [
    "ApprovalResult",
    "ApprovalRule",
    "Condition",
    "EvalCondition",
    "ModelRegistry",
    "ModelSummary",
    "ModelVersionInfo",
    "Policy",
    "PromotionVerdict",
    "RollbackResult",
    "load_policy",
]
