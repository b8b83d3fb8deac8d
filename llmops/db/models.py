"""Registry tables.

The registry database is the hub of the product (DESIGN.md section 1). This module holds the tables
built so far; later stages add theirs here and through a new migration:

- prompts: ``prompt``, ``prompt_version``, ``prompt_label`` (this module);
- artifacts: ``artifact``, ``artifact_version``, ``artifact_alias`` (the artifact store);
- training: ``training_run``, ``run_metric`` (this module);
- evaluation: ``eval_run``, ``eval_result``, ``eval_pair`` (this module);
- model registry: ``model_request``, ``model_approval``, ``model_semver``, ``eval_target``
  (which model digests an eval run tested), ``registry_event`` and ``event_delivery`` (the
  outbox); model versions themselves are artifact versions;
- human review: ``review_item`` and ``review_label`` (in :mod:`llmops.db.review_tables`);
- pipelines: ``pipeline_run`` and ``pipeline_step`` (in :mod:`llmops.db.pipeline_tables`);
- serving: ``serve_backend`` (who serves a model version, where), ``traffic_policy`` (a logical
  model's arms, split and stickiness), ``gateway_key`` (hashed API keys), ``serve_request`` (the
  gateway's per-request log: arm, status, latency, tokens; never contents), ``serve_feedback``
  and ``shadow_pair`` (mirrored answers kept for judging); canaries: ``canary`` (a progressive
  rollout's spec and state), ``canary_decision`` (every advance, hold, rollback and promotion
  with its numbers) and ``serve_lease`` (which gateway replica leads a logical model's
  controller).

Every state change of any of them appends a row to ``audit_event``. Versions are immutable: the
only column that ever changes on ``prompt_version`` is ``archived``.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, ClassVar

from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from llmops.db.timestamps import utcnow

if TYPE_CHECKING:  # defined on first use (see _LATER at the end)
    from llmops.db.pipeline_tables import PipelineRun, PipelineStep
    from llmops.db.review_tables import ReviewItem, ReviewLabel
    from llmops.db.serving_tables import (
        CanaryDecisionRow,
        CanaryRow,
        GatewayKey,
        ServeBackend,
        ServeFeedback,
        ServeLatencyBucket,
        ServeLease,
        ServeRequest,
        ServeRollup,
        ShadowPair,
        TrafficPolicyRow,
    )

__all__ = [
    "Artifact",
    "ArtifactAlias",
    "ArtifactVersionRow",
    "AuditEvent",
    "CanaryDecisionRow",
    "CanaryRow",
    "EvalPair",
    "EvalResult",
    "EvalRun",
    "EvalTarget",
    "EventDelivery",
    "GatewayKey",
    "ModelApproval",
    "ModelRequest",
    "ModelSemver",
    "PipelineRun",
    "PipelineStep",
    "Prompt",
    "PromptLabel",
    "PromptVersionRow",
    "RegistryEvent",
    "RegistryInfo",
    "ReviewItem",
    "ReviewLabel",
    "RunMetric",
    "SQLModel",
    "ServeBackend",
    "ServeFeedback",
    "ServeLatencyBucket",
    "ServeLease",
    "ServeRequest",
    "ServeRollup",
    "ShadowPair",
    "StoreChunk",
    "StorePack",
    "TrafficPolicyRow",
    "TrainingRun",
    "load_all",
    "utcnow",
]


def _ts() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class Prompt(SQLModel, table=True):
    """A prompt name; its content lives in its versions."""

    __tablename__ = "prompt"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True, index=True)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=256)
    latest_version: int = Field(default=0)
    """Highest version number so far; bumped under the row lock that serialises pushes."""


class PromptVersionRow(SQLModel, table=True):
    """One immutable version of a prompt."""

    __tablename__ = "prompt_version"
    __table_args__ = (
        UniqueConstraint("prompt_id", "version", name="uq_prompt_version_number"),
        UniqueConstraint("prompt_id", "digest", name="uq_prompt_version_digest"),
        # Covers `versions()`: listings never touch the rows' content (measured: the fetch of
        # 10,000 versions drops from 17 to 11 ms on SQLite).
        Index(
            "ix_prompt_version_listing",
            "prompt_id",
            "version",
            "digest",
            "message",
            "author",
            "created_at",
            "archived",
        ),
    )

    id: int | None = Field(default=None, primary_key=True)
    prompt_id: int = Field(foreign_key="prompt.id", index=True)
    version: int
    digest: str = Field(max_length=80)
    spec: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    message: str = Field(default="")
    author: str = Field(max_length=256)
    created_at: datetime = _ts()
    archived: bool = Field(default=False)


class PromptLabel(SQLModel, table=True):
    """A movable pointer from a label name to one version of a prompt."""

    __tablename__ = "prompt_label"
    pointer_kind: ClassVar[str] = "label"

    prompt_id: int = Field(foreign_key="prompt.id", primary_key=True)
    label: str = Field(max_length=128, primary_key=True)
    version: int
    updated_at: datetime = _ts()
    updated_by: str = Field(max_length=256)

    @classmethod
    def create(cls, owner_id: int, name: str, version: int, actor: str) -> PromptLabel:
        """A new label row."""
        return cls(prompt_id=owner_id, label=name, version=version, updated_by=actor)


class AuditEvent(SQLModel, table=True):
    """Append-only log of every state change: who, when, what, before and after.

    Database triggers (see the migrations) refuse UPDATE and DELETE on this table.
    """

    __tablename__ = "audit_event"
    __table_args__ = (Index("ix_audit_entity", "entity_type", "entity_key", "id"),)

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = _ts()
    actor: str = Field(max_length=256)
    action: str = Field(max_length=64)
    entity_type: str = Field(max_length=64)
    entity_key: str = Field(max_length=256)
    before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    after: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class Artifact(SQLModel, table=True):
    """An artifact name (a model, adapter, dataset ...); its content lives in its versions."""

    __tablename__ = "artifact"

    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(max_length=128, unique=True, index=True)
    created_at: datetime = _ts()
    created_by: str = Field(max_length=256)
    latest_version: int = Field(default=0)


class ArtifactVersionRow(SQLModel, table=True):
    """One immutable version of an artifact: a manifest in the store plus metadata."""

    __tablename__ = "artifact_version"
    __table_args__ = (
        UniqueConstraint("artifact_id", "version", name="uq_artifact_version_number"),
    )

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id", index=True)
    version: int
    digest: str = Field(max_length=80, index=True)
    kind: str = Field(max_length=32)
    store: str = Field(max_length=512)
    bytes_total: int = Field(sa_column=Column(BigInteger, nullable=False))
    file_count: int
    parents: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    meta: dict[str, Any] = Field(default_factory=dict, sa_column=Column(JSON, nullable=False))
    message: str = Field(default="")
    created_by: str = Field(max_length=256)
    created_at: datetime = _ts()


class ArtifactAlias(SQLModel, table=True):
    """A movable pointer from an alias (``production``, ``candidate`` ...) to a version."""

    __tablename__ = "artifact_alias"
    pointer_kind: ClassVar[str] = "alias"

    artifact_id: int = Field(foreign_key="artifact.id", primary_key=True)
    alias: str = Field(max_length=128, primary_key=True)
    version: int
    updated_at: datetime = _ts()
    updated_by: str = Field(max_length=256)

    @classmethod
    def create(cls, owner_id: int, name: str, version: int, actor: str) -> ArtifactAlias:
        """A new alias row."""
        return cls(artifact_id=owner_id, alias=name, version=version, updated_by=actor)


class RegistryInfo(SQLModel, table=True):
    """Facts about the registry itself; ``registry_id`` is made once, when it is created."""

    __tablename__ = "registry_info"

    key: str = Field(primary_key=True, max_length=64)
    value: str = Field(max_length=256)


class StorePack(SQLModel, table=True):
    """A pack object in an artifact store: many compressed chunks in one large object."""

    __tablename__ = "store_pack"

    id: int | None = Field(default=None, primary_key=True)
    store: str = Field(max_length=512)
    key: str = Field(max_length=256)
    size: int = Field(sa_column=Column(BigInteger, nullable=False))
    created_at: datetime = _ts()
    last_used_at: datetime = _ts()
    """Bumped when a push reuses a chunk of this pack; gc spares packs used within its grace."""


class StoreChunk(SQLModel, table=True):
    """Where one chunk (by BLAKE3 digest of its raw bytes) lives in a store."""

    __tablename__ = "store_chunk"

    store: str = Field(max_length=512, primary_key=True)
    digest: str = Field(max_length=64, primary_key=True)
    pack_id: int = Field(foreign_key="store_pack.id", index=True)
    offset: int = Field(sa_column=Column(BigInteger, nullable=False))
    stored_length: int = Field(sa_column=Column(BigInteger, nullable=False))
    raw_length: int = Field(sa_column=Column(BigInteger, nullable=False))
    codec: str = Field(max_length=16)


class TrainingRun(SQLModel, table=True):
    """One fine-tuning run: what went in (recipe, data, base model, code), how it went, what came
    out. Written when the run starts, updated as it goes; the resolved recipe never changes."""

    __tablename__ = "training_run"

    id: str = Field(primary_key=True, max_length=32)
    """``run-`` and 12 hex digits."""
    status: str = Field(max_length=16, index=True)
    """``running``, ``completed`` or ``failed`` (a killed run stays ``running`` until resumed)."""
    recipe_name: str = Field(max_length=256)
    recipe: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    recipe_hash: str = Field(max_length=80)
    dataset_fingerprint: str = Field(max_length=80)
    dataset_ref: str = Field(default="", max_length=300)
    base_model: str = Field(max_length=1024)
    base_model_digest: str = Field(max_length=80)
    seed: int
    environment: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    """Library versions, git commit of the workspace, hardware, world size."""
    output_dir: str = Field(max_length=1024)
    created_by: str = Field(max_length=256)
    started_at: datetime = _ts()
    updated_at: datetime = _ts()
    """Last heartbeat (a metric, a checkpoint, a status change)."""
    ended_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    step: int = Field(default=0)
    max_steps: int = Field(default=0)
    last_checkpoint_step: int | None = Field(default=None)
    final_loss: float | None = Field(default=None)
    adapter_ref: str | None = Field(default=None, max_length=300)
    merged_ref: str | None = Field(default=None, max_length=300)
    error: str | None = Field(default=None)
    attempts: int = Field(default=1)
    """1 for a run that was never resumed; +1 per resume."""


class RunMetric(SQLModel, table=True):
    """Metrics of one logging step of a training run (train or eval)."""

    __tablename__ = "run_metric"

    run_id: str = Field(foreign_key="training_run.id", primary_key=True, max_length=32)
    step: int = Field(primary_key=True)
    split: str = Field(primary_key=True, max_length=8)
    """``train`` or ``eval``."""
    values: dict[str, float] = Field(sa_column=Column(JSON, nullable=False))
    """loss, learning_rate, grad_norm, tokens_per_s, eval_loss, ..."""
    at: datetime = _ts()


class EvalRun(SQLModel, table=True):
    """One run of an eval suite: what was run, against what, and the summary statistics."""

    __tablename__ = "eval_run"

    id: str = Field(primary_key=True, max_length=32)
    """``eval-`` and 12 hex digits."""
    suite_name: str = Field(max_length=256)
    suite_path: str = Field(default="", max_length=1024)
    suite_digest: str = Field(max_length=80, index=True)
    suite: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    status: str = Field(max_length=16)
    """``running``, ``completed`` or ``failed`` (a killed run stays ``running``; resume it)."""
    targets: list[str] = Field(sa_column=Column(JSON, nullable=False))
    summary: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    cases: int = Field(default=0)
    errors: int = Field(default=0)
    environment: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    created_by: str = Field(max_length=256)
    started_at: datetime = _ts()
    updated_at: datetime = _ts()
    ended_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class EvalResult(SQLModel, table=True):
    """One case of one target in an eval run: output, verdict, cost."""

    __tablename__ = "eval_result"

    run_id: str = Field(foreign_key="eval_run.id", primary_key=True, max_length=32)
    case_index: int = Field(primary_key=True)
    target: str = Field(primary_key=True, max_length=128)
    case_id: str | None = Field(default=None, max_length=256)
    vars: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    case_metadata: dict[str, Any] | None = Field(
        default=None, sa_column=Column(JSON, nullable=True)
    )
    """The case's ``metadata`` (tags, topic, source); None in runs recorded before it existed."""
    output: str = Field(sa_column=Column(Text, nullable=False))
    passed: bool | None = Field(default=None)
    """None when the case errored (provider failure, judge error): neither pass nor fail."""
    score: float | None = Field(default=None)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    assertions: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    prompt_tokens: int = Field(default=0)
    completion_tokens: int = Field(default=0)
    cost: float = Field(default=0.0)
    latency_ms: float = Field(default=0.0)
    cached: bool = Field(default=False)
    human: str | None = Field(default=None, max_length=16)


class EvalPair(SQLModel, table=True):
    """A pairwise judgement of two targets' answers to one case (both orders)."""

    __tablename__ = "eval_pair"

    run_id: str = Field(foreign_key="eval_run.id", primary_key=True, max_length=32)
    case_index: int = Field(primary_key=True)
    verdict: str | None = Field(default=None, max_length=8)
    """``A`` (the first target), ``B`` or ``TIE``; None on a judge error."""
    consistent: bool | None = Field(default=None)
    details: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    human: str | None = Field(default=None, max_length=16)


class EvalTarget(SQLModel, table=True):
    """Which model files an eval run's target ran (the evidence index of promotions): one row
    per target and role (``model``, ``adapter``, or ``declared`` for ``model_version:``)."""

    __tablename__ = "eval_target"

    run_id: str = Field(foreign_key="eval_run.id", primary_key=True, max_length=32)
    target: str = Field(primary_key=True, max_length=256)
    role: str = Field(primary_key=True, max_length=16)
    digest: str = Field(max_length=80, index=True)
    ref: str | None = Field(default=None, max_length=300)


class ModelRequest(SQLModel, table=True):
    """A promotion of a model version to a guarded alias, waiting for approvals (or decided)."""

    __tablename__ = "model_request"
    __table_args__ = (Index("ix_model_request_target", "artifact_id", "version", "alias"),)

    id: int | None = Field(default=None, primary_key=True)
    artifact_id: int = Field(foreign_key="artifact.id")
    version: int
    alias: str = Field(max_length=128)
    status: str = Field(max_length=16)
    """``pending``, ``promoted`` or ``rejected``."""
    requested_by: str = Field(max_length=256)
    requested_at: datetime = _ts()
    decided_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    policy_digest: str = Field(max_length=80)


class ModelApproval(SQLModel, table=True):
    """A person's approval (or rejection) of a promotion request."""

    __tablename__ = "model_approval"
    __table_args__ = (UniqueConstraint("request_id", "approver", name="uq_model_approval"),)

    id: int | None = Field(default=None, primary_key=True)
    request_id: int = Field(foreign_key="model_request.id", index=True)
    approver: str = Field(max_length=256)
    decision: str = Field(max_length=16)
    """``approve`` or ``reject``."""
    comment: str = Field(default="")
    at: datetime = _ts()


class ModelSemver(SQLModel, table=True):
    """A semantic version given to a model version: unique per model, never moved."""

    __tablename__ = "model_semver"
    __table_args__ = (UniqueConstraint("artifact_id", "version", name="uq_model_semver_version"),)

    artifact_id: int = Field(foreign_key="artifact.id", primary_key=True)
    semver: str = Field(primary_key=True, max_length=64)
    version: int
    created_by: str = Field(max_length=256)
    created_at: datetime = _ts()


class RegistryEvent(SQLModel, table=True):
    """The outbox: every registry state change, written in the transaction that made it."""

    __tablename__ = "registry_event"

    id: int | None = Field(default=None, primary_key=True)
    delivery_id: str = Field(max_length=40, unique=True)
    """Sent as ``X-LLMOps-Delivery``: receivers de-duplicate on it."""
    type: str = Field(max_length=64, index=True)
    model: str = Field(max_length=128, index=True)
    payload: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    at: datetime = _ts()


class EventDelivery(SQLModel, table=True):
    """One event's delivery to one webhook: attempts, status and the last error."""

    __tablename__ = "event_delivery"

    event_id: int = Field(foreign_key="registry_event.id", primary_key=True)
    webhook: str = Field(primary_key=True, max_length=128)
    status: str = Field(max_length=16)
    """``pending``, ``delivered`` or ``failed`` (attempts used up)."""
    attempts: int = Field(default=0)
    last_error: str | None = Field(default=None, max_length=1000)
    next_attempt_at: datetime = _ts()
    delivered_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


# The tables of later stages live in their own modules, defined on first use: each SQLModel table
# costs ~5 ms to define, and a command of the prompts, artifacts or evals groups never needs the
# 15 serving, pipeline and review tables (~160 ms of every start). ``load_all`` registers them
# all on the metadata (migrations and schema checks need every table).
_LATER = ("llmops.db.pipeline_tables", "llmops.db.review_tables", "llmops.db.serving_tables")
"""The modules of later stages' tables; each one's ``__all__`` names its tables."""


def __getattr__(name: str) -> Any:
    import importlib

    if name.startswith("__"):  # the import system asks for __path__ ...: never a table
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    for module in _LATER:
        tables = importlib.import_module(module)
        if name in tables.__all__:
            found = getattr(tables, name)
            globals()[name] = found
            return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def load_all() -> Any:
    """Define every table (also those of later stages) and return ``SQLModel.metadata``."""
    import importlib

    for module in _LATER:
        importlib.import_module(module)
    return SQLModel.metadata
