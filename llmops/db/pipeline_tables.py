"""Pipeline tables: one row per run of a pipeline and one per step of it, with the step's cache
key, outputs, timings and status. Re-imported by :mod:`llmops.db.models`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Text
from sqlmodel import Field, SQLModel

from llmops.db.timestamps import utcnow

__all__ = ["PipelineRun", "PipelineStep"]


def _ts() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class PipelineRun(SQLModel, table=True):
    """One run of a pipeline file."""

    __tablename__ = "pipeline_run"

    id: str = Field(primary_key=True, max_length=32)
    """``pipe-`` and 12 hex digits."""
    pipeline: str = Field(max_length=256, index=True)
    """The pipeline's name."""
    path: str = Field(sa_column=Column(Text, nullable=False))
    digest: str = Field(max_length=80)
    """``sha256:`` of the pipeline file's canonical form."""
    status: str = Field(max_length=16, index=True)
    """``running``, ``completed``, ``failed`` or ``interrupted`` (its process died)."""
    options: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    """How it was started: ``from``, ``only``, ``force``, ``engine``."""
    pid: int = Field(default=0)
    host: str = Field(default="", max_length=256)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    created_by: str = Field(max_length=256)
    started_at: datetime = _ts()
    ended_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )


class PipelineStep(SQLModel, table=True):
    """One step of one pipeline run: what it was keyed on and what it produced."""

    __tablename__ = "pipeline_step"

    run_id: str = Field(foreign_key="pipeline_run.id", primary_key=True, max_length=32)
    name: str = Field(primary_key=True, max_length=128)
    position: int = Field(default=0)
    """Its place in the run order."""
    kind: str = Field(max_length=256)
    """``train``, ``eval`` ..., or ``python:module:function``."""
    key: str | None = Field(default=None, max_length=80, index=True)
    """``sha256:`` of its inputs, parameters and upstream outputs (None until computed)."""
    inputs: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    """What the key was computed from (fingerprints, parameters, upstream outputs)."""
    status: str = Field(max_length=16)
    """``pending``, ``running``, ``ran``, ``cached``, ``failed`` or ``skipped``."""
    outputs: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    cached_from: str | None = Field(default=None, max_length=32)
    """The pipeline run whose outputs a cached step reused."""
    attempts: int = Field(default=0)
    seconds: float = Field(default=0.0)
    error: str | None = Field(default=None, sa_column=Column(Text, nullable=True))
    started_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
    ended_at: datetime | None = Field(
        default=None, sa_column=Column(DateTime(timezone=True), nullable=True)
    )
