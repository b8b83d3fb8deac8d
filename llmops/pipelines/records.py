"""Pipeline runs in the registry database: each run with its steps' keys, outputs, timings and
status, and the lookups the runner needs (a completed step with the same cache key, a step's
last outputs). ``ws.pipelines`` in notebooks; ``llmops pipeline show|list`` on the command line.
"""

from __future__ import annotations

import builtins
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar

from sqlmodel import col, select

from llmops._display import Display
from llmops._record import Record
from llmops.db.audit import record_event
from llmops.db.engine import Database
from llmops.db.models import PipelineRun, PipelineStep
from llmops.db.timestamps import as_utc, utcnow
from llmops.errors import NotFoundError

__all__ = ["PipelineRunRecord", "Pipelines", "StepRecord"]

DONE = ("ran", "cached")
"""Statuses of a step whose outputs are usable."""


@dataclass(frozen=True, slots=True, repr=False)
class StepRecord(Display, Record):
    """One step of a pipeline run."""

    name: str
    kind: str
    status: str
    """``pending``, ``running``, ``ran``, ``cached``, ``failed`` or ``skipped``."""
    key: str | None
    outputs: dict[str, Any]
    seconds: float
    attempts: int
    cached_from: str | None
    error: str | None
    inputs: dict[str, Any]

    _repr_fields: ClassVar[tuple[str, ...]] = ("name", "status", "seconds", "error")


@dataclass(frozen=True, slots=True, repr=False)
class PipelineRunRecord(Display, Record):
    """One run of a pipeline with its steps in run order."""

    run_id: str
    pipeline: str
    path: str
    digest: str
    status: str
    """``running``, ``completed``, ``failed`` or ``interrupted``."""
    options: dict[str, Any]
    error: str | None
    created_by: str
    started_at: datetime
    ended_at: datetime | None
    steps: list[StepRecord]

    _repr_fields: ClassVar[tuple[str, ...]] = ("run_id", "pipeline", "status")
    _json_computed: ClassVar[tuple[str, ...]] = ("seconds",)

    @property
    def seconds(self) -> float | None:
        if self.ended_at is None:
            return None
        return round((self.ended_at - self.started_at).total_seconds(), 3)

    def step(self, name: str) -> StepRecord:
        """The step called ``name``.

        Raises:
            NotFoundError: No such step in this run.
        """
        for s in self.steps:
            if s.name == name:
                return s
        raise NotFoundError(f"pipeline run {self.run_id} has no step {name!r}")


def _step(row: PipelineStep) -> StepRecord:
    return StepRecord(
        name=row.name, kind=row.kind, status=row.status, key=row.key, outputs=row.outputs or {},
        seconds=round(row.seconds, 3), attempts=row.attempts, cached_from=row.cached_from,
        error=row.error, inputs=row.inputs or {},
    )  # fmt: skip


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class Pipelines:
    """Pipeline runs: ``run`` a pipeline file, ``list`` runs, ``get`` one with its steps."""

    def __init__(self, db: Database, *, actor: str) -> None:
        self.db = db
        self.actor = actor

    def __repr__(self) -> str:
        return "Pipelines(.run(path), .list(), .get(run_id | 'latest'))"

    # -- reading ---------------------------------------------------------------------------

    def get(self, run_id: str = "latest") -> PipelineRunRecord:
        """One run (``latest``: the newest) with its steps.

        Raises:
            NotFoundError: No such run.
        """
        with self.db.read() as session:
            if run_id == "latest":
                query = select(PipelineRun).order_by(
                    col(PipelineRun.started_at).desc(), col(PipelineRun.id).desc()
                )
                row = session.scalars(query.limit(1)).first()
            else:
                row = session.get(PipelineRun, run_id)
            if row is None:
                raise NotFoundError(
                    f"no pipeline run {run_id!r}",
                    hint="list them with `llmops pipeline list`; run one with "
                    "`llmops pipeline run`",
                )
            steps = session.scalars(
                select(PipelineStep)
                .where(col(PipelineStep.run_id) == row.id)
                .order_by(col(PipelineStep.position))
            ).all()
            return self._record(row, [_step(s) for s in steps])

    def _record(self, row: PipelineRun, steps: builtins.list[StepRecord]) -> PipelineRunRecord:
        return PipelineRunRecord(
            run_id=row.id, pipeline=row.pipeline, path=row.path, digest=row.digest,
            status=row.status, options=row.options or {}, error=row.error,
            created_by=row.created_by, started_at=as_utc(row.started_at),
            ended_at=as_utc(row.ended_at) if row.ended_at else None, steps=steps,
        )  # fmt: skip

    def list(
        self, *, pipeline: str | None = None, limit: int = 50
    ) -> builtins.list[PipelineRunRecord]:
        """Runs, newest first (with their steps)."""
        query = select(PipelineRun).order_by(
            col(PipelineRun.started_at).desc(), col(PipelineRun.id).desc()
        )
        if pipeline is not None:
            query = query.where(col(PipelineRun.pipeline) == pipeline)
        with self.db.read() as session:
            rows = session.scalars(query.limit(limit)).all()
            ids = [r.id for r in rows]
            by_run: dict[str, builtins.list[StepRecord]] = {i: [] for i in ids}
            if ids:
                steps = session.scalars(
                    select(PipelineStep)
                    .where(col(PipelineStep.run_id).in_(ids))
                    .order_by(col(PipelineStep.position))
                )
                for s in steps:
                    by_run[s.run_id].append(_step(s))
            return [self._record(r, by_run[r.id]) for r in rows]

    def cached(self, key: str) -> tuple[str, dict[str, Any]] | None:
        """``(run id, outputs)`` of the newest completed step with cache key ``key``."""
        query = (
            select(col(PipelineStep.run_id), col(PipelineStep.outputs))
            .join(PipelineRun, col(PipelineRun.id) == col(PipelineStep.run_id))
            .where(col(PipelineStep.key) == key, col(PipelineStep.status).in_(DONE))
            .order_by(col(PipelineStep.ended_at).desc())
            .limit(1)
        )
        with self.db.read() as session:
            found = session.execute(query).first()
        return (str(found[0]), dict(found[1] or {})) if found else None

    def last_done(
        self, pipeline: str, step: str, *, kind: str | None = None
    ) -> tuple[str, str | None, dict[str, Any]] | None:
        """``(run id, key, outputs)`` of the newest completed run of step ``step`` (of that
        ``kind``: a step since redefined as another kind does not count)."""
        query = (
            select(col(PipelineStep.run_id), col(PipelineStep.key), col(PipelineStep.outputs))
            .join(PipelineRun, col(PipelineRun.id) == col(PipelineStep.run_id))
            .where(
                col(PipelineRun.pipeline) == pipeline,
                col(PipelineStep.name) == step,
                col(PipelineStep.status).in_(DONE),
                *([col(PipelineStep.kind) == kind] if kind is not None else []),
            )
            .order_by(col(PipelineStep.ended_at).desc())
            .limit(1)
        )
        with self.db.read() as session:
            found = session.execute(query).first()
        return (str(found[0]), found[1], dict(found[2] or {})) if found else None

    def last_completed_run(self, pipeline: str) -> PipelineRunRecord | None:
        """The newest run of ``pipeline`` that completed."""
        with self.db.read() as session:
            row = session.scalars(
                select(PipelineRun)
                .where(col(PipelineRun.pipeline) == pipeline,
                       col(PipelineRun.status) == "completed")
                .order_by(col(PipelineRun.started_at).desc())
                .limit(1)
            ).first()  # fmt: skip
        return self.get(row.id) if row is not None else None

    # -- writing (the runner's) ------------------------------------------------------------

    def _start(
        self, *, pipeline: str, path: str, digest: str, options: dict[str, Any],
        steps: builtins.list[tuple[str, str]],
    ) -> str:  # fmt: skip
        """Record a new run and its steps (``(name, kind)``, in run order) as pending; first
        mark runs of this host whose process died as interrupted."""
        self._reap()
        run_id = f"pipe-{uuid.uuid4().hex[:12]}"
        with self.db.write() as session:
            session.add(PipelineRun(
                id=run_id, pipeline=pipeline, path=path, digest=digest, status="running",
                options=options, pid=os.getpid(), host=socket.gethostname(),
                created_by=self.actor,
            ))  # fmt: skip
            session.flush()
            for position, (name, kind) in enumerate(steps):
                session.add(PipelineStep(run_id=run_id, name=name, position=position, kind=kind,
                                         inputs={}, status="pending", outputs={}))  # fmt: skip
            after = {"pipeline": pipeline, "digest": digest, "options": options}
            record_event(session, actor=self.actor, action="pipeline.run.start",
                         entity_type="pipeline_run", entity_key=run_id, after=after)  # fmt: skip
        return run_id

    def _reap(self) -> int:
        """Runs of this host still ``running`` whose process is gone: ``interrupted``, and
        their unfinished steps ``failed`` with the reason."""
        host = socket.gethostname()
        with self.db.write() as session:
            rows = session.scalars(
                select(PipelineRun).where(col(PipelineRun.status) == "running",
                                          col(PipelineRun.host) == host)
            ).all()  # fmt: skip
            dead = [r for r in rows if r.pid != os.getpid() and not _alive(r.pid)]
            for r in dead:
                why = f"its process ({r.pid}) ended before the run did"
                self._end_unfinished(session, r, why, "interrupted: the pipeline's process ended")
            return len(dead)

    def _end_unfinished(self, session: Any, run: PipelineRun, why: str, step_why: str) -> None:
        run.status, run.ended_at, run.error = "interrupted", utcnow(), why
        for s in session.scalars(select(PipelineStep).where(
            col(PipelineStep.run_id) == run.id,
            col(PipelineStep.status).in_(("running", "pending")),
        )):  # fmt: skip
            s.status = "failed" if s.status == "running" else "skipped"
            s.error = step_why
        record_event(session, actor=self.actor, action="pipeline.run.interrupted",
                     entity_type="pipeline_run", entity_key=run.id,
                     after={"error": why})  # fmt: skip

    def _interrupt(self, run_id: str, why: str) -> None:
        """End a run stopped in this process (Ctrl-C, an exception outside any step): its
        running step failed, the steps not reached skipped."""
        with self.db.write() as session:
            row = session.get(PipelineRun, run_id)
            assert row is not None
            self._end_unfinished(session, row, why, f"interrupted: {why}")

    def _step(self, run_id: str, name: str, **fields: Any) -> None:
        with self.db.write() as session:
            row = session.get(PipelineStep, (run_id, name))
            assert row is not None
            for k, v in fields.items():
                setattr(row, k, v)

    def _finish(self, run_id: str, status: str, error: str | None = None) -> None:
        with self.db.write() as session:
            row = session.get(PipelineRun, run_id)
            assert row is not None
            row.status, row.error, row.ended_at = status, error, utcnow()
            record_event(session, actor=self.actor, action=f"pipeline.run.{status}",
                         entity_type="pipeline_run", entity_key=run_id,
                         after={"error": error} if error else None)  # fmt: skip
