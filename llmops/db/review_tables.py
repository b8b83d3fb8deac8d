"""Human review tables: items to review (two answers to one input, or one answer) and the
labels reviewers gave them. Re-imported by :mod:`llmops.db.models`."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from llmops.db.timestamps import utcnow

__all__ = ["ReviewItem", "ReviewLabel"]


def _ts() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


class ReviewItem(SQLModel, table=True):
    """Something for people to judge: two answers to the same input (``pairwise``) or one
    answer (``single``), with where it came from and what the judge said of it."""

    __tablename__ = "review_item"

    id: str = Field(primary_key=True, max_length=32)
    """``rev-`` and 12 hex digits."""
    kind: str = Field(max_length=16)
    """``pairwise`` or ``single``."""
    source: str = Field(max_length=32, index=True)
    """``eval_pair``, ``eval_targets``, ``eval_result``, ``shadow_pair`` or ``manual``."""
    source_key: str = Field(max_length=300, unique=True)
    """What it was made from (``<run>:<case>``, ``shadow:<id>`` ...): adding it twice is a no-op."""
    run_id: str | None = Field(default=None, max_length=32, index=True)
    case_index: int | None = Field(default=None)
    input: dict[str, Any] = Field(sa_column=Column(JSON, nullable=False))
    """``{"vars": {...}}`` or ``{"messages": [...]}``: what both answers answered."""
    answers: list[dict[str, Any]] = Field(sa_column=Column(JSON, nullable=False))
    """``[{"model", "text"}]``: A then B (one answer for ``single`` items)."""
    judge: str | None = Field(default=None, max_length=16)
    """The automatic judge's verdict on it: ``A``, ``B``, ``TIE``, ``pass`` or ``fail``."""
    created_by: str = Field(max_length=256)
    created_at: datetime = _ts()


class ReviewLabel(SQLModel, table=True):
    """One reviewer's label of one item (a reviewer relabelling replaces theirs; the audit log
    keeps every change)."""

    __tablename__ = "review_label"
    __table_args__ = (UniqueConstraint("item_id", "reviewer", name="uq_review_label"),)

    id: int | None = Field(default=None, primary_key=True)
    item_id: str = Field(foreign_key="review_item.id", index=True, max_length=32)
    reviewer: str = Field(max_length=256)
    choice: str = Field(max_length=16)
    """``A``, ``B``, ``tie`` or ``both_bad`` (pairwise); ``pass`` or ``fail`` (single). A and B
    are the item's answers in stored order, whatever order the reviewer saw."""
    shown: str = Field(default="AB", max_length=2)
    """The order the reviewer saw the answers in: ``AB`` or ``BA`` (randomized per item)."""
    comment: str = Field(default="", sa_column=Column(Text, nullable=False))
    at: datetime = _ts()
