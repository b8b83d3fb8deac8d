"""The records of human review (items, labels, agreement) and the small rules they share:
the order a reviewer sees an item's answers in, and what a majority of labels says."""

from __future__ import annotations

import builtins
import hashlib
import unicodedata
import uuid
from collections import Counter
from dataclasses import dataclass
from datetime import datetime
from typing import Any, ClassVar, Literal

from llmops._display import Display
from llmops._record import Record
from llmops.db.models import ReviewItem, ReviewLabel
from llmops.db.timestamps import as_utc
from llmops.errors import InputError

__all__ = [
    "Label",
    "ReviewAgreement",
    "ReviewItemRecord",
    "answer",
    "item_record",
    "label_record",
    "majority",
    "model_name",
    "new_item_id",
    "printable",
    "reviewer_name",
    "shown_order",
]

_MAX_TEXT = 100_000


@dataclass(frozen=True, slots=True, repr=False)
class ReviewItemRecord(Display, Record):
    """An item to review, with its labels so far."""

    item: str
    kind: Literal["pairwise", "single"]
    source: str
    source_key: str
    run_id: str | None
    case_index: int | None
    input: dict[str, Any]
    answers: list[dict[str, Any]]
    """``[{"model", "text"}]``: A then B."""
    judge: str | None
    created_at: datetime
    labels: int = 0
    shown: str = "AB"
    """The order to show the answers in, for the reviewer it was fetched for."""

    _repr_fields: ClassVar[tuple[str, ...]] = ("item", "kind", "source", "labels")

    @property
    def models(self) -> list[str]:
        """The answering models, A then B."""
        return [str(a.get("model", "")) for a in self.answers]


@dataclass(frozen=True, slots=True, repr=False)
class Label(Display, Record):
    """One reviewer's label of one item."""

    item: str
    choice: str
    reviewer: str
    shown: str
    comment: str
    at: datetime

    _repr_fields: ClassVar[tuple[str, ...]] = ("item", "choice", "reviewer")


@dataclass(frozen=True, slots=True)
class ReviewAgreement:
    """How far people agree with each other, and the judge with them."""

    items: int
    labels: int
    reviewers: int
    multiply_labelled: int
    """Items with at least two reviewers' labels (what alpha is computed on)."""
    alpha: float
    """Krippendorff's alpha among reviewers (nominal; NaN without a doubly labelled item)."""
    judge: dict[str, Any] | None
    """The judge against the reviewers' majority: ``n``, ``agreement``, ``kappa``,
    ``confusion`` (``confusion[human][judge]``); None when no labelled item has a verdict."""

    def to_json(self) -> dict[str, Any]:
        """Plain data."""
        return {
            "items": self.items,
            "labels": self.labels,
            "reviewers": self.reviewers,
            "multiply_labelled": self.multiply_labelled,
            "alpha": None if self.alpha != self.alpha else self.alpha,
            "judge": self.judge,
        }


def new_item_id() -> str:
    """``rev-`` and 12 random hex digits."""
    return f"rev-{uuid.uuid4().hex[:12]}"


def shown_order(item: str, reviewer: str) -> Literal["AB", "BA"]:
    """The order ``reviewer`` sees ``item``'s answers in: random-looking, but the same every
    time the same reviewer fetches the same item (a reload does not reshuffle)."""
    digest = hashlib.blake2b(f"{item}\0{reviewer}".encode(), digest_size=1).digest()
    return "BA" if digest[0] & 1 else "AB"


def item_record(row: ReviewItem, labels: int = 0, shown: str = "AB") -> ReviewItemRecord:
    return ReviewItemRecord(
        item=row.id,
        kind=row.kind,  # type: ignore[arg-type]
        source=row.source,
        source_key=row.source_key,
        run_id=row.run_id,
        case_index=row.case_index,
        input=row.input,
        answers=row.answers,
        judge=row.judge,
        created_at=as_utc(row.created_at),
        labels=labels,
        shown=shown,
    )


def label_record(row: ReviewLabel) -> Label:
    return Label(
        item=row.item_id,
        choice=row.choice,
        reviewer=row.reviewer,
        shown=row.shown,
        comment=row.comment,
        at=as_utc(row.at),
    )


def majority(choices: builtins.list[str]) -> str | None:
    """The most common choice, or None on a tie between the most common ones."""
    if not choices:
        return None
    ranked = Counter(choices).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


def answer(model: str, text: Any, **extra: Any) -> dict[str, Any]:
    """An item's answer: ``{"model", "text"}`` and ``extra`` (``target``); a text past
    100,000 characters is cut, and ``truncated`` says how long it was (such items never become
    DPO rows)."""
    full = str(text or "")
    out: dict[str, Any] = {"model": str(model), "text": full[:_MAX_TEXT], **extra}
    if len(full) > _MAX_TEXT:
        out["truncated"] = len(full)
    return out


def model_name(target: str, identity: dict[str, Any] | None) -> str:
    """What a target ran, for rankings across runs: its model reference, else its name."""
    data = identity or {}
    ref = data.get("adapter_ref") or data.get("ref") or data.get("adapter") or data.get("name")
    return str(ref) if ref else target


def printable(text: str) -> bool:
    """No control, format (zero-width, bidi overrides) or unpaired surrogate characters."""
    return not any(unicodedata.category(ch).startswith("C") for ch in text)


def reviewer_name(reviewer: str) -> str:
    name = unicodedata.normalize("NFC", (reviewer or "").strip())
    if not name or len(name) > 256 or not printable(name):
        raise InputError(
            f"reviewer {reviewer!r} must be a name of 1 to 256 printable characters",
            hint="pass --reviewer NAME (default: your user name)",
        )
    return name
