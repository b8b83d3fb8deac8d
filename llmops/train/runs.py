"""Run tracking: every training run is a registry record with its inputs, progress and outcome.

Reach it as ``Workspace.runs``. A run is written when it starts (resolved recipe and its hash,
dataset fingerprint, base model digest, library versions, git commit, hardware, seed), gets a
metrics row per logging step and a heartbeat, and ends ``completed`` (with its adapter) or
``failed`` (with the one-line error). A process killed with SIGKILL leaves ``running`` behind;
``llmops train --resume RUN_ID`` continues it.
"""

from __future__ import annotations

import builtins
import dataclasses
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

from sqlalchemy import and_, delete, func, select
from sqlmodel import col

from llmops._display import Display, Listing, flatten, store_repr
from llmops._record import Record, versioned
from llmops.db import Database
from llmops.db.audit import record_event
from llmops.db.models import RunMetric, TrainingRun
from llmops.db.timestamps import as_utc, parse_when, utcnow
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


@dataclass(slots=True, kw_only=True, repr=False)
class RunRecord(Display, Record):
    """A snapshot of one training run."""

    _repr_fields = (
        "run_id", "status", "recipe_name", "step", "max_steps", "final_loss", "adapter_ref",
        "error", "started_at",
    )  # fmt: skip

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
    final_metrics: dict[str, float] = field(default_factory=dict)
    """The last logged value of each metric (``loss``, ``eval_loss``, ``learning_rate``, ...)."""

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

    def flat(self) -> dict[str, Any]:
        """One row for DataFrames: the run's fields, ``params.<dotted recipe key>`` for the
        resolved recipe and ``metrics.<name>`` for the last value of each metric."""
        out: dict[str, Any] = {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("recipe", "environment", "final_metrics")
        }
        recipe = {k: v for k, v in self.recipe.items() if k != "format_version"}
        out.update({f"params.{k}": v for k, v in flatten(recipe).items()})
        out.update({f"metrics.{k}": v for k, v in self.final_metrics.items()})
        return out


def _status(row: TrainingRun) -> RunStatus:
    if row.status == "running" and utcnow() - as_utc(row.updated_at) > STALE_AFTER:
        return "interrupted"
    return row.status  # type: ignore[return-value]


def _record(row: TrainingRun, final_metrics: dict[str, float] | None = None) -> RunRecord:
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
        error=row.error, attempts=row.attempts, final_metrics=final_metrics or {},
    )  # fmt: skip


class Runs:
    """Training runs in the registry database."""

    def __init__(self, db: Database, *, actor: str) -> None:
        self.db = db
        self.actor = actor

    def _create(self, **fields: Any) -> RunRecord:
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

    def _update(self, run_id: str, *, event: str | None = None, **fields: Any) -> RunRecord:
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
            return _record(row, _final_metrics(session, [run_id]).get(run_id))

    def _log(
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

    def _heartbeat(self, run_id: str) -> None:
        """Mark a running run as alive now (no audit row)."""
        with self.db.write() as session:
            row = session.get(TrainingRun, run_id)
            if row is not None and row.status == "running":
                row.updated_at = utcnow()

    def _forget_after(self, run_id: str, step: int) -> None:
        """Drop metrics logged after ``step`` (a killed attempt's steps that a resume redoes)."""
        with self.db.write() as session:
            session.execute(
                delete(RunMetric).where(col(RunMetric.run_id) == run_id, col(RunMetric.step) > step)
            )
            row = session.get(TrainingRun, run_id)
            if row is not None:
                row.step = step

    def get(self, run_id: str) -> RunRecord:
        """One run (``latest``: the newest).

        Raises:
            RunNotFoundError: There is no run ``run_id``.
        """
        if run_id == "latest":
            newest = self.search(limit=1)
            if not newest:
                raise RunNotFoundError("there is no training run yet", hint="run `llmops train`")
            return newest[0]
        with self.db.read() as session:
            row = session.get(TrainingRun, run_id)
            if row is None:
                raise RunNotFoundError(
                    f"no training run {run_id!r}", hint="see `llmops runs list` for run ids"
                )
            return _record(row, _final_metrics(session, [run_id]).get(run_id))

    def list(self, *, status: RunStatus | None = None, limit: int = 50) -> Listing[RunRecord]:
        """Runs, newest first (``.to_pandas()`` for a DataFrame; see :meth:`search`)."""
        return self.search(status=status, limit=limit)

    def search(
        self,
        *,
        status: RunStatus | None = None,
        recipe: str | None = None,
        base_model: str | None = None,
        dataset: str | None = None,
        params: Mapping[str, Any] | None = None,
        since: datetime | timedelta | str | None = None,
        until: datetime | timedelta | str | None = None,
        limit: int = 50,
    ) -> Listing[RunRecord]:
        """Runs matching every filter given, newest first (as ``mlflow.search_runs``).

        Args:
            status: As shown: ``interrupted`` runs are stored as running.
            recipe: The recipe as it was given (``recipes/sft-lora.yaml``), its file name,
                or its file name without ``.yaml``.
            base_model: The base model as the recipe names it, its ``name@version``, or its
                digest.
            dataset: The dataset artifact reference or fingerprint.
            params: Resolved recipe values by dotted key, e.g. ``{"lora.r": 16}``.
            since: Started at or after: a datetime, a timedelta or ``"7d"`` ago, ISO text.
            until: Started before.
            limit: At most this many runs.
        """
        query = select(TrainingRun).order_by(col(TrainingRun.started_at).desc())
        if status:
            stored = "running" if status == "interrupted" else status
            query = query.where(col(TrainingRun.status) == stored)
        if base_model is not None:
            query = query.where(
                (col(TrainingRun.base_model) == base_model)
                | (col(TrainingRun.base_model_digest) == base_model)
            )
        if dataset is not None:
            query = query.where(
                (col(TrainingRun.dataset_ref) == dataset)
                | (col(TrainingRun.dataset_fingerprint) == dataset)
            )
        if since is not None:
            query = query.where(col(TrainingRun.started_at) >= parse_when(since, what="since"))
        if until is not None:
            query = query.where(col(TrainingRun.started_at) < parse_when(until, what="until"))
        wanted = dict(params or {})
        exact = not wanted and recipe is None and status not in ("running", "interrupted")
        if exact:
            query = query.limit(limit)
        found: list[TrainingRun] = []
        with self.db.read() as session:
            for row in session.scalars(query):
                if wanted and not _has_params(row.recipe, wanted):
                    continue
                if recipe is not None and recipe not in _recipe_names(row.recipe_name):
                    continue
                if status and _status(row) != status:
                    continue
                found.append(row)
                if len(found) >= limit:
                    break
            metrics = _final_metrics(session, [r.id for r in found])
            return Listing(_record(r, metrics.get(r.id)) for r in found)

    def __repr__(self) -> str:
        with self.db.read() as session:
            count = session.scalar(select(func.count()).select_from(TrainingRun)) or 0
        newest = self.list(limit=1)
        latest = None
        if newest:
            latest = f"{newest[0].run_id} ({newest[0].recipe_name}, {newest[0].status})"
        methods = ".list(), .search(status=, params=, since=), .get(id), .metrics(id)"
        return store_repr("Runs", count, latest, methods)

    def metrics(self, run_id: str) -> builtins.list[dict[str, Any]]:
        """Every logged step in order: ``{"step", "split", "loss", "learning_rate", ...}``."""
        if run_id == "latest":
            run_id = self.get(run_id).run_id
        query = (
            select(RunMetric)
            .where(col(RunMetric.run_id) == run_id)
            .order_by(col(RunMetric.step), col(RunMetric.split))
        )
        with self.db.read() as session:
            return [{"step": m.step, "split": m.split, **m.values} for m in session.scalars(query)]


def _recipe_names(name: str) -> tuple[str, str, str]:
    """A run's recipe as it was given (``recipes/sft-lora.yaml``), its file name, its stem."""
    file = name.replace("\\", "/").rsplit("/", 1)[-1]
    return name, file, file.rsplit(".", 1)[0] if file.endswith((".yaml", ".yml")) else file


def _has_params(recipe: dict[str, Any], wanted: dict[str, Any]) -> bool:
    flat = flatten(recipe)
    return all(key in flat and flat[key] == value for key, value in wanted.items())


def _final_metrics(session: Any, run_ids: builtins.list[str]) -> dict[str, dict[str, float]]:
    """Per run: the last logged value of each metric (train rows, then eval rows over them)."""
    if not run_ids:
        return {}
    last = (
        select(
            col(RunMetric.run_id), col(RunMetric.split), func.max(col(RunMetric.step)).label("step")
        )
        .where(col(RunMetric.run_id).in_(run_ids))
        .group_by(col(RunMetric.run_id), col(RunMetric.split))
        .subquery()
    )
    query = select(RunMetric).join(
        last,
        and_(
            col(RunMetric.run_id) == last.c.run_id,
            col(RunMetric.split) == last.c.split,
            col(RunMetric.step) == last.c.step,
        ),
    )
    out: dict[str, dict[str, float]] = {}
    for m in sorted(session.scalars(query), key=lambda m: m.split != "train"):
        out.setdefault(m.run_id, {}).update(m.values)
    return out


def _plain(values: dict[str, Any]) -> dict[str, Any]:
    return {k: (v.isoformat() if isinstance(v, datetime) else v) for k, v in values.items()}
