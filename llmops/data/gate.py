"""The data gate: checks a dataset before any training minute is spent.

Checks (each finding names its rows, 1-based as in the file):

===================== ===========================================================================
``invalid_utf8``      a row is not valid UTF-8
``invalid_json``      a JSONL line is not a JSON object
``schema``            fields, types and roles do not fit the format
``empty_turn``        a message, prompt or completion is empty or whitespace only
``template``          the chat template fails to render the row
``truncated``         the row has more tokens than ``max_length`` (it would be cut)
``exact_duplicate``   the row repeats an earlier row exactly
``near_duplicate``    the row nearly repeats an earlier one (word 3-gram Jaccard >= 0.8)
``train_eval_overlap`` an eval row's prompt also appears in the training rows
``chosen_equals_rejected`` a preference row prefers a response over itself
===================== ===========================================================================

Each check fails the gate when the fraction of rows it flags is above its threshold
(:class:`GateThresholds`); below it the finding is a warning. The report carries the dataset's
content fingerprint: BLAKE3 over the rows' canonical JSON, so the same rows give the same
fingerprint whatever the file type.
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import blake3
from pydantic import BaseModel, ConfigDict, Field

from llmops.data.dedup import near_duplicates
from llmops.data.formats import BadRow, Row, check_row, dataset_text, read_rows
from llmops.data.templates import ChatRenderer
from llmops.errors import DataGateError, DatasetError

__all__ = [
    "DataReport",
    "Finding",
    "GateThresholds",
    "load_split",
    "split_indices",
    "validate_dataset",
]

MAX_ROWS_LISTED = 1000
"""Row numbers listed per finding; the count is always exact."""


class GateThresholds(BaseModel):
    """Largest fraction of rows each check may flag before the gate fails (0 = any fails)."""

    model_config = ConfigDict(extra="forbid")

    invalid_utf8: float = Field(default=0.0, ge=0, le=1)
    invalid_json: float = Field(default=0.0, ge=0, le=1)
    schema_: float = Field(default=0.0, ge=0, le=1, alias="schema")
    empty_turn: float = Field(default=0.0, ge=0, le=1)
    template: float = Field(default=0.0, ge=0, le=1)
    truncated: float = Field(default=0.05, ge=0, le=1)
    """Rows longer than ``max_length`` are cut by the trainer; a few are tolerable."""
    exact_duplicate: float = Field(default=0.01, ge=0, le=1)
    near_duplicate: float = Field(default=0.05, ge=0, le=1)
    train_eval_overlap: float = Field(default=0.0, ge=0, le=1)
    """Fraction of *eval* rows whose prompt is also a training prompt."""
    chosen_equals_rejected: float = Field(default=0.0, ge=0, le=1)

    def limit(self, check: str) -> float:
        """The threshold of ``check``."""
        return float(getattr(self, "schema_" if check == "schema" else check))


@dataclass(slots=True)
class Finding:
    """Rows flagged by one check."""

    check: str
    rows: list[int]
    count: int
    message: str
    threshold: float
    fraction: float
    fails: bool

    def to_json(self) -> dict[str, Any]:
        """The report contract: ``check``, ``rows``, ``message`` and more."""
        return {
            "check": self.check, "rows": self.rows, "count": self.count,
            "message": self.message, "fraction": round(self.fraction, 6),
            "threshold": self.threshold, "severity": "error" if self.fails else "warning",
        }  # fmt: skip


@dataclass(slots=True)
class DataReport:
    """What the gate found in a dataset."""

    path: str
    format: str
    rows: int
    fingerprint: str
    findings: list[Finding] = field(default_factory=list)
    eval_rows: int = 0
    max_tokens: int | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no finding fails the gate."""
        return not any(f.fails for f in self.findings)

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "findings", "rows", "fingerprint", ...}``."""
        return {
            "ok": self.ok, "path": self.path, "format": self.format, "rows": self.rows,
            "eval_rows": self.eval_rows, "fingerprint": self.fingerprint,
            "max_tokens": self.max_tokens, "seconds": round(self.seconds, 3),
            "findings": [f.to_json() for f in self.findings],
        }  # fmt: skip

    def raise_if_failed(self) -> None:
        """Raise :class:`DataGateError` naming the failing checks and their first rows."""
        failing = [f for f in self.findings if f.fails]
        if not failing:
            return
        parts = [
            f"{f.check} ({f.count} rows, e.g. row {f.rows[0]}: {f.message})"
            if f.rows
            else f"{f.check} ({f.message})"
            for f in failing
        ]
        raise DataGateError(
            f"{self.path}: the data gate failed: {'; '.join(parts)}",
            hint=f"run `llmops data validate {self.path} --format {self.format}` for the rows, "
            "fix them, or raise the thresholds under `gate:` in the recipe",
        )


def split_indices(n: int, fraction: float, seed: int) -> tuple[list[int], list[int]]:
    """Train and eval row indexes for a seeded random split (eval gets ``fraction``)."""
    if fraction <= 0:
        return list(range(n)), []
    order = list(range(n))
    random.Random(seed).shuffle(order)  # noqa: S311 - a reproducible split, not a secret
    n_eval = max(1, round(n * fraction))
    return sorted(order[n_eval:]), sorted(order[:n_eval])


def load_split(path: str | Path, fmt: str) -> list[Row]:
    """The valid rows of a dataset file (for training after the gate passed).

    Raises:
        DatasetError: A row is unreadable or does not fit ``fmt``.
    """
    rows: list[Row] = []
    for item in read_rows(path):
        if isinstance(item, BadRow):
            raise DatasetError(f"{path}: row {item.number}: {item.message}")
        problem = check_row(item.data, fmt)
        if problem:
            raise DatasetError(f"{path}: row {item.number}: {problem}")
        rows.append(item)
    return rows


class _Collector:
    def __init__(self) -> None:
        self.rows: dict[str, list[int]] = {}
        self.examples: dict[str, str] = {}

    def add(self, check: str, row: int, message: str) -> None:
        self.rows.setdefault(check, []).append(row)
        self.examples.setdefault(check, message)


def _empty_turn(data: dict[str, Any], fmt: str) -> str | None:
    if fmt == "chat":
        for i, m in enumerate(data["messages"]):
            if not m["content"].strip():
                return f"messages[{i}] ({m['role']}) is empty or whitespace only"
        return None
    for name, value in data.items():
        if name not in ("prompt", "completion", "chosen", "rejected"):
            continue
        texts = [value] if isinstance(value, str) else [m["content"] for m in value]
        if any(not t.strip() for t in texts):
            return f"'{name}' is empty or whitespace only"
    return None


def _canonical(data: dict[str, Any]) -> bytes:
    return json.dumps(data, sort_keys=True, ensure_ascii=False, separators=(",", ":")).encode()


def validate_dataset(
    path: str | Path,
    fmt: str,
    *,
    tokenizer: Any = None,
    chat_template: str | None = None,
    max_length: int | None = None,
    eval_path: str | Path | None = None,
    eval_fraction: float = 0.0,
    seed: int = 0,
    thresholds: GateThresholds | None = None,
) -> DataReport:
    """Run every check on a dataset file (and its eval file or split) and report findings.

    Args:
        path: JSONL, CSV or Parquet file.
        fmt: ``chat``, ``prompt-completion`` or ``preference``.
        tokenizer: A transformers tokenizer for the template and token-length checks (skipped
            without one).
        chat_template: A Jinja chat template overriding the tokenizer's.
        max_length: Token limit of training; longer rows are reported as ``truncated``.
        eval_path: A separate eval file, checked too and for overlap with the training rows.
        eval_fraction: Without ``eval_path``, the share of rows split off for eval (seeded).
        seed: Seed of that split.
        thresholds: Per-check limits; defaults from :class:`GateThresholds`.

    Raises:
        DatasetError: The file is missing or of an unknown type, or ``fmt`` is unknown.
    """
    from llmops.data.formats import FORMATS

    if fmt not in FORMATS:
        raise DatasetError(
            f"unknown dataset format {fmt!r}", hint=f"use one of {', '.join(FORMATS)}"
        )
    limits = thresholds or GateThresholds()
    started = time.perf_counter()
    found = _Collector()
    hasher = blake3.blake3()
    max_tokens = None
    # Tokenizing runs in Rust without the GIL: rows are rendered as they are read and each
    # chunk is counted in a thread while the scan, the split and the duplicate checks go on here.
    pool = ThreadPoolExecutor(max_workers=1)
    try:
        counts = (
            None if tokenizer is None else _TokenCounts(fmt, tokenizer, chat_template, found, pool)
        )
        on_valid = None if counts is None else counts.add
        total, valid, digests = _scan(path, fmt, found, hasher, on_valid)
        train_rows, eval_rows = _eval_split(
            valid, fmt, found, eval_path=eval_path, eval_fraction=eval_fraction, seed=seed
        )
        _duplicates(valid, digests, fmt, found)
        if counts is not None:
            max_tokens = _lengths(counts.finish(), max_length, found)
    except BaseException:
        pool.shutdown(wait=True, cancel_futures=True)  # chunks still queued are not counted
        raise
    pool.shutdown(wait=True)
    if eval_rows:
        _overlap(train_rows, eval_rows, fmt, found)
    report = DataReport(
        path=str(path),
        format=fmt,
        rows=total,
        eval_rows=len(eval_rows),
        fingerprint=f"blake3:{hasher.hexdigest()}",
        max_tokens=max_tokens,
    )
    for check, rows in found.rows.items():
        denominator = len(eval_rows) if check == "train_eval_overlap" else total
        fraction = len(rows) / max(denominator, 1)
        limit = limits.limit(check)
        report.findings.append(
            Finding(
                check=check,
                rows=sorted(rows)[:MAX_ROWS_LISTED],
                count=len(rows),
                message=found.examples[check],
                threshold=limit,
                fraction=fraction,
                fails=fraction > limit,
            )
        )
    if not train_rows:
        held = f", {len(eval_rows)} held out for eval" if eval_rows else ""
        report.findings.append(
            Finding(
                check="no_training_rows",
                rows=[],
                count=0,
                message=f"nothing to train on: {total} rows, {len(valid)} valid{held}",
                threshold=0.0,
                fraction=1.0,
                fails=True,
            )
        )
    report.findings.sort(key=lambda f: (not f.fails, f.check))
    report.seconds = time.perf_counter() - started
    return report


def _scan(
    path: str | Path,
    fmt: str,
    found: _Collector,
    hasher: Any,
    on_valid: Callable[[Row], None] | None = None,
) -> tuple[int, list[Row], list[bytes]]:
    """Read every row, fingerprint it and run the per-row checks; the valid rows and the digest
    of each one's canonical JSON (for the exact-duplicate check). ``on_valid`` sees each valid
    row as soon as it is read."""
    valid: list[Row] = []
    digests: list[bytes] = []
    total = 0
    for item in read_rows(path):
        total += 1
        if isinstance(item, BadRow):
            found.add(item.check, item.number, item.message)
            continue
        canonical = _canonical(item.data)
        hasher.update(canonical + b"\n")
        problem = check_row(item.data, fmt)
        if problem:
            found.add("schema", item.number, problem)
            continue
        empty = _empty_turn(item.data, fmt)
        if empty:
            found.add("empty_turn", item.number, empty)
        if fmt == "preference" and item.data["chosen"] == item.data["rejected"]:
            found.add("chosen_equals_rejected", item.number, "'chosen' equals 'rejected'")
        valid.append(item)
        digests.append(blake3.blake3(canonical).digest())
        if on_valid is not None:
            on_valid(item)
    return total, valid, digests


def _eval_split(
    valid: list[Row],
    fmt: str,
    found: _Collector,
    *,
    eval_path: str | Path | None,
    eval_fraction: float,
    seed: int,
) -> tuple[list[Row], list[Row]]:
    if eval_path is not None:
        eval_rows: list[Row] = []
        for item in read_rows(eval_path):
            if isinstance(item, BadRow):
                found.add(item.check, item.number, f"eval file: {item.message}")
            elif problem := check_row(item.data, fmt):
                found.add("schema", item.number, f"eval file: {problem}")
            else:
                eval_rows.append(item)
        return valid, eval_rows
    train_idx, eval_idx = split_indices(len(valid), eval_fraction, seed)
    return [valid[i] for i in train_idx], [valid[i] for i in eval_idx]


def _duplicates(rows: Sequence[Row], digests: Sequence[bytes], fmt: str, out: _Collector) -> None:
    seen: dict[bytes, int] = {}
    unique: list[Row] = []
    for row, key in zip(rows, digests, strict=True):
        first = seen.setdefault(key, row.number)
        if first != row.number:
            out.add("exact_duplicate", row.number, f"repeats row {first}")
        else:
            unique.append(row)
    texts = [dataset_text(r.data, fmt) for r in unique]
    for later, earlier in near_duplicates(texts):
        out.add(
            "near_duplicate",
            unique[later].number,
            f"nearly repeats row {unique[earlier].number}",
        )


def _norm(text: str) -> str:
    return " ".join(text.lower().split())


def _overlap(train: Iterable[Row], evals: Sequence[Row], fmt: str, out: _Collector) -> None:
    prompts = {_norm(dataset_text(r.data, fmt, part="prompt")): r.number for r in train}
    for row in evals:
        match = prompts.get(_norm(dataset_text(row.data, fmt, part="prompt")))
        if match is not None:
            out.add(
                "train_eval_overlap",
                row.number,
                f"eval row {row.number}'s prompt is training row {match}'s",
            )


def _token_lengths(tokenizer: Any, texts: list[str]) -> list[int]:
    """Token counts; the Rust tokenizer's offset-free batch path when there is one (it counts
    the same tokens, about twice as fast)."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    fast = getattr(backend, "encode_batch_fast", None)
    if fast is not None:
        return [len(e.ids) for e in fast(texts, add_special_tokens=False)]
    return [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]


_CHUNK = 4096


class _TokenCounts:
    """Renders rows through the chat template (rows it fails on are findings) and submits the
    texts for token counting chunk by chunk, to a thread."""

    def __init__(
        self,
        fmt: str,
        tokenizer: Any,
        chat_template: str | None,
        out: _Collector,
        pool: ThreadPoolExecutor,
    ) -> None:
        self.fmt = fmt
        self.tokenizer = tokenizer
        self.chat_template = chat_template
        self.out = out
        self.pool = pool
        self.renderer: ChatRenderer | None = None
        self.refused: DatasetError | None = None
        """Why no renderer could be built (no chat template ...): raised by :meth:`finish`, after
        the scan and the split, so a missing file or eval file is still reported first."""
        self.chunks: list[tuple[list[int], Future[list[int]]]] = []
        self.texts: list[str] = []
        self.numbers: list[int] = []

    def _ready(self) -> ChatRenderer | None:
        if self.renderer is None and self.refused is None:
            try:
                self.renderer = ChatRenderer.for_tokenizer(self.tokenizer, self.chat_template)
            except DatasetError as exc:
                self.refused = exc
        return self.renderer

    def add(self, row: Row) -> None:
        renderer = self._ready()
        if renderer is None:
            return
        try:
            self.texts.append(renderer.render_row(row.data, self.fmt))
        except DatasetError as exc:
            self.out.add("template", row.number, exc.message)
            return
        self.numbers.append(row.number)
        if len(self.texts) == _CHUNK:
            self._submit()

    def _submit(self) -> None:
        counting = self.pool.submit(_token_lengths, self.tokenizer, self.texts)
        self.chunks.append((self.numbers, counting))
        self.texts, self.numbers = [], []

    def finish(self) -> list[tuple[list[int], Future[list[int]]]]:
        """Every chunk: ``(row numbers, future token counts)``.

        Raises:
            DatasetError: The tokenizer cannot render these rows (no chat template ...).
        """
        self._ready()
        if self.refused is not None:
            raise self.refused
        if self.texts:
            self._submit()
        return self.chunks


def _lengths(
    chunks: list[tuple[list[int], Future[list[int]]]], max_length: int | None, out: _Collector
) -> int:
    """Report rows over ``max_length``; the longest row's token count."""
    longest = 0
    for numbers, counting in chunks:
        for number, length in zip(numbers, counting.result(), strict=True):
            longest = max(longest, length)
            if max_length is not None and length > max_length:
                out.add("truncated", number, f"{length} tokens, over max_length {max_length}")
    return longest
