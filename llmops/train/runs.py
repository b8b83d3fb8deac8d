"""Run tracking: every training run is a registry record with its inputs, progress and outcome.

Reach it as ``Workspace.runs``. A run is written when it starts (resolved recipe and its hash,
dataset fingerprint, base model digest, library versions, git commit, hardware, seed), gets a
metrics row per logging step and a heartbeat, and ends ``completed`` (with its adapter) or
``failed`` (with the one-line error). A process killed with SIGKILL leaves ``running`` behind;
``llmops train --resume RUN_ID`` continues it.
"""

from __future__ import annotations

import builtins
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from sqlalchemy import delete, select
from sqlmodel import col

from llmops._record import Record, versioned
from llmops.db import Database
from llmops.db.audit import record_event
from llmops.db.models import RunMetric, TrainingRun
from llmops.db.timestamps import as_utc, utcnow
from llmops.errors import RunNotFoundError

__all__ = ["RunRecord", "RunStatus", "Runs", "new_run_id"]

RunStatus = Literal["running", "completed", "failed", "interrupted"]
"""``interrupted``: stored as running, but its heartbeat stopped (the process was killed);
``llmops train --resume RUN_ID`` continues it."""

HEARTBEAT_S = 30.0
"""A running run's heartbeat (``updated_at``) is bumped at least this often."""
STALE_AFTER = timedelta(minutes=5)
"""A running run whose heartbeat is older than this is shown as ``interrupted``."""
_ENTITY = "training_run"


def new_run_id() -> str:
    """``run-`` and 12 random hex digits."""
    return f"run-{uuid.uuid4().hex[:12]}"


FORMAT_VERSION = 1
"""Version of the training run record's JSON form (``runs show --json``)."""


@dataclass(slots=True, kw_only=True)
class RunRecord(Record):
    """A snapshot of one training run."""

    run_id: str
    status: RunStatus
    recipe_name: str
    recipe: dict[str, Any]
    recipe_hash: str
    dataset_fingerprint: str
    dataset_ref: str
    base_model: str
    base_model_digest: str
    seed: int
    environment: dict[str, Any]
    output_dir: str
    created_by: str
    started_at: datetime
    updated_at: datetime
    ended_at: datetime | None
    step: int
    max_steps: int
    last_checkpoint_step: int | None
    final_loss: float | None
    adapter_ref: str | None
    merged_ref: str | None
    error: str | None
    attempts: int

    _json_renames: ClassVar[dict[str, str]] = {"adapter_ref": "adapter", "merged_ref": "merged"}

    def to_json(
        self, metrics: builtins.list[dict[str, Any]] | None = None, *, full: bool = True
    ) -> dict[str, Any]:
        """The ``runs show`` contract: run_id, status, recipe_hash, dataset_fingerprint,
        base_model_digest, metrics, and the rest of the record (``full=False`` leaves out the
        resolved recipe and the environment, for listings)."""
        out = versioned(Record.to_json(self), FORMAT_VERSION)
        if not full:
            del out["recipe"], out["environment"]
        if metrics is not None:
            out["metrics"] = metrics
        return out


def _status(row: TrainingRun) -> RunStatus:
    if row.status == "running" and utcnow() - as_utc(row.updated_at) > STALE_AFTER:
        return "interrupted"
    return row.status  # type: ignore[return-value]


def _record(row: TrainingRun) -> RunRecord:
    return RunRecord(
        run_id=row.id, status=_status(row), recipe_name=row.recipe_name, recipe=row.recipe,
        recipe_hash=row.recipe_hash, dataset_fingerprint=row.dataset_fingerprint,
        dataset_ref=row.dataset_ref, base_model=row.base_model,
        base_model_digest=row.base_model_digest, seed=row.seed, environment=row.environment,
        output_dir=row.output_dir, created_by=row.created_by,
        started_at=as_utc(row.started_at), updated_at=as_utc(row.updated_at),
        ended_at=as_utc(row.ended_at) if row.ended_at else None, step=row.step,
        max_steps=row.max_steps, last_checkpoint_step=row.last_checkpoint_step,
        final_loss=row.final_loss, adapter_ref=row.adapter_ref, merged_ref=row.merged_ref,
        error=row.error, attempts=row.attempts,
    )  # fmt: skip


class Runs:
    """Training runs in the registry database."""

    def __init__(self, db: Database, *, actor: str) -> None:
        self.db = db
        self.actor = actor

    def create(self, **fields: Any) -> RunRecord:
        """Record a new run (status ``running``); ``fields`` are :class:`TrainingRun` columns."""
        row = TrainingRun(status="running", created_by=self.actor, **fields)
        with self.db.write() as session:
            session.add(row)
            record_event(
                session, actor=self.actor, action="run.start", entity_type=_ENTITY,
                entity_key=row.id, after={"recipe_hash": row.recipe_hash,
                                          "base_model_digest": row.base_model_digest},
            )  # fmt: skip
            session.flush()
            return _record(row)

    def update(self, run_id: str, *, event: str | None = None, **fields: Any) -> RunRecord:
        """Change columns of a run and bump its heartbeat; ``event`` also audits the change."""
        with self.db.write() as session:
            row = session.get(TrainingRun, run_id)
            if row is None:
                raise RunNotFoundError(f"no training run {run_id!r}", hint="see `llmops runs list`")
            before = {k: getattr(row, k) for k in fields}
            for key, value in fields.items():
                setattr(row, key, value)
            row.updated_at = utcnow()
            if event:
                record_event(
                    session, actor=self.actor, action=event, entity_type=_ENTITY,
                    entity_key=run_id, before=_plain(before), after=_plain(fields),
                )  # fmt: skip
            session.flush()
            return _record(row)

    def log(
        self, run_id: str, step: int, values: dict[str, float], *, split: str = "train"
    ) -> None:
        """Store one logging step's metrics (replacing that step's row after a resume)."""
        with self.db.write() as session:
            existing = session.get(RunMetric, (run_id, step, split))
            if existing is not None:
                existing.values = values
                existing.at = utcnow()
            else:
                session.add(RunMetric(run_id=run_id, step=step, split=split, values=values))
            row = session.get(TrainingRun, run_id)
            if row is not None:
                row.step = max(row.step, step) if split == "train" else row.step
                row.updated_at = utcnow()

    def heartbeat(self, run_id: str) -> None:
        """Mark a running run as alive now (no audit row)."""
        with self.db.write() as session:
            row = session.get(TrainingRun, run_id)
            if row is not None and row.status == "running":
                row.updated_at = utcnow()

    def forget_after(self, run_id: str, step: int) -> None:
        """Drop metrics logged after ``step`` (a killed attempt's steps that a resume redoes)."""
        with self.db.write() as session:
            session.execute(
                delete(RunMetric).where(col(RunMetric.run_id) == run_id, col(RunMetric.step) > step)
            )
            row = session.get(TrainingRun, run_id)
            if row is not None:
                row.step = step

    def get(self, run_id: str) -> RunRecord:
        """One run.

        Raises:
            RunNotFoundError: There is no run ``run_id``.
        """
        with self.db.read() as session:
            row = session.get(TrainingRun, run_id)
            if row is None:
                raise RunNotFoundError(
                    f"no training run {run_id!r}", hint="see `llmops runs list` for run ids"
                )
            return _record(row)

    def list(self, *, status: str | None = None, limit: int = 50) -> builtins.list[RunRecord]:
        """Runs, newest first (``status`` as shown: ``interrupted`` runs are stored as
        running)."""
        query = select(TrainingRun).order_by(col(TrainingRun.started_at).desc())
        if status:
            stored = "running" if status == "interrupted" else status
            query = query.where(col(TrainingRun.status) == stored)
        if status not in ("running", "interrupted"):
            query = query.limit(limit)
        with self.db.read() as session:
            records = [_record(r) for r in session.scalars(query)]
        return [r for r in records if not status or r.status == status][:limit]

    def metrics(self, run_id: str) -> builtins.list[dict[str, Any]]:
        """Every logged step in order: ``{"step", "split", "loss", "learning_rate", ...}``."""
        query = (
            select(RunMetric)
            .where(col(RunMetric.run_id) == run_id)
            .order_by(col(RunMetric.step), col(RunMetric.split))
        )
        with self.db.read() as session:
            return [{"step": m.step, "split": m.split, **m.values} for m in session.scalars(query)]


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}
