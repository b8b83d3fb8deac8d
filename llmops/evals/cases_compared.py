"""Two sides (an eval run's target each: two runs, or two targets of one run) compared case by
case: the paired difference, the verdicts that flipped with McNemar's exact test, the score
distributions, and the cases themselves a page at a time with filters.

What the dashboard's compare page shows, and what a notebook gets from the same calls. The
statistics read one light row per case (verdict, score, latency, cost, assertion types); outputs
and judge reasons are read only for the page of cases on screen.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from sqlalchemy import select
from sqlmodel import col

from llmops.db.models import EvalResult
from llmops.evals.compare import case_ident, differences
from llmops.evals.stats import Paired, mcnemar, paired

if TYPE_CHECKING:
    from llmops.evals.results import EvalRuns

__all__ = [
    "CASE_STATUSES",
    "CaseFilter",
    "CasePage",
    "CaseStatus",
    "Side",
    "SideComparison",
    "case_page",
    "compare_sides",
    "word_diff",
]

CaseStatus = Literal["regressed", "fixed", "changed", "same", "errored"]
CASE_STATUSES: tuple[CaseStatus, ...] = ("regressed", "fixed", "changed", "same", "errored")
"""``regressed``: passed in A, failed in B; ``fixed``: the other way; ``changed``: the same
verdict with another score; ``same``; ``errored``: no verdict on one side."""

MAX_PAGE = 500


@dataclass(frozen=True, slots=True)
class Side:
    """One side of a comparison: a run and one of its targets."""

    run_id: str
    target: str

    def __str__(self) -> str:
        return f"{self.run_id}:{self.target}"


@dataclass(slots=True)
class _Light:
    index: int
    case_id: str | None
    vars: dict[str, Any]
    metadata: dict[str, Any]
    passed: bool | None
    score: float | None
    latency_ms: float
    cost: float
    failed_types: frozenset[str]
    types: frozenset[str]


def _light_rows(runs: EvalRuns, side: Side) -> dict[str, _Light]:
    query = select(
        col(EvalResult.case_index),
        col(EvalResult.case_id),
        col(EvalResult.vars),
        col(EvalResult.case_metadata),
        col(EvalResult.passed),
        col(EvalResult.score),
        col(EvalResult.latency_ms),
        col(EvalResult.cost),
        col(EvalResult.assertions),
    ).where(col(EvalResult.run_id) == side.run_id, col(EvalResult.target) == side.target)
    out: dict[str, _Light] = {}
    with runs.db.connect() as conn:
        for index, case_id, vars_, meta, passed, score, latency, cost, asserted_ in conn.execute(
            query
        ):
            asserted = asserted_ or []
            row = _Light(
                index=int(index),
                case_id=case_id,
                vars=vars_ or {},
                metadata=meta or {},
                passed=passed,
                score=score,
                latency_ms=float(latency or 0.0),
                cost=float(cost or 0.0),
                failed_types=frozenset(str(a.get("type")) for a in asserted if not a.get("passed")),
                types=frozenset(str(a.get("type")) for a in asserted),
            )
            out.setdefault(case_ident(row.case_id, row.vars), row)
    return out


def _status(a: _Light, b: _Light) -> CaseStatus:
    if a.passed is None or b.passed is None:
        return "errored"
    if a.passed and not b.passed:
        return "regressed"
    if b.passed and not a.passed:
        return "fixed"
    if (a.score or 0.0) != (b.score or 0.0):
        return "changed"
    return "same"


@dataclass(frozen=True, slots=True)
class SideComparison:
    """B against A over the cases both sides ran."""

    a: Side
    b: Side
    paired: Paired
    """Paired difference of scores (B - A), over the cases both graded."""
    pass_rate_a: float | None
    pass_rate_b: float | None
    flips: dict[str, int]
    """The 2x2 table of verdicts: ``pass_to_fail`` and ``fail_to_pass`` (the discordant cases
    McNemar's test reads), ``pass_to_pass`` and ``fail_to_fail``."""
    p_mcnemar: float
    """Exact McNemar p-value of the flips."""
    counts: dict[str, int]
    """Cases per :data:`CASE_STATUSES` value."""
    only_a: int
    only_b: int
    scores_a: list[float]
    scores_b: list[float]
    latency_a: list[float]
    latency_b: list[float]
    cost_a: float
    cost_b: float
    assertion_types: list[str]
    warnings: list[str] = field(default_factory=list)
    rows: tuple[dict[str, _Light], dict[str, _Light]] = field(default=({}, {}), repr=False)
    """Each side's verdicts per case identity (what :func:`case_page` filters and pages)."""

    def to_json(self) -> dict[str, Any]:
        """Plain data (the score and latency lists left out)."""
        return {
            "a": str(self.a),
            "b": str(self.b),
            **self.paired.to_json(),
            "verdict": self.paired.verdict(),
            "pass_rate_a": self.pass_rate_a,
            "pass_rate_b": self.pass_rate_b,
            "flips": self.flips,
            "p_mcnemar": self.p_mcnemar,
            "counts": self.counts,
            "only_a": self.only_a,
            "only_b": self.only_b,
            "cost_a": self.cost_a,
            "cost_b": self.cost_b,
            "warnings": self.warnings,
        }


def _targets_of(runs: EvalRuns, side: Side) -> None:
    record = runs.get(side.run_id)
    if side.target not in record.targets:
        raise ValueError(
            f"run {side.run_id} has no target {side.target!r}: it has {', '.join(record.targets)}"
        )


def compare_sides(runs: EvalRuns, a: Side, b: Side) -> SideComparison:
    """Compare side ``b`` with side ``a`` case by case.

    Raises:
        EvalRunNotFoundError: a run does not exist.
        ValueError: a side names a target its run does not have.
    """
    _targets_of(runs, a)
    _targets_of(runs, b)
    rows_a, rows_b = _light_rows(runs, a), _light_rows(runs, b)
    common = [k for k in rows_a if k in rows_b]
    graded = [k for k in common if rows_a[k].passed is not None and rows_b[k].passed is not None]
    stats = paired(
        [float(rows_a[k].score or 0.0) for k in graded],
        [float(rows_b[k].score or 0.0) for k in graded],
    )
    counts: dict[str, int] = dict.fromkeys(CASE_STATUSES, 0)
    for k in common:
        counts[_status(rows_a[k], rows_b[k])] += 1
    both = [(rows_a[k].passed, rows_b[k].passed) for k in graded]
    flips = {
        "pass_to_fail": counts["regressed"],
        "fail_to_pass": counts["fixed"],
        "pass_to_pass": sum(1 for x, y in both if x and y),
        "fail_to_fail": sum(1 for x, y in both if not x and not y),
    }
    warnings: list[str] = []
    if a.run_id != b.run_id:
        warnings = differences(
            runs.get(a.run_id),
            runs.get(b.run_id),
            runs.suite_of(a.run_id),
            runs.suite_of(b.run_id),
            {(k, "") for k in rows_a},
            {(k, "") for k in rows_b},
            targets=False,  # two named targets are compared: other targets do not matter
        )
    elif a.target == b.target:
        warnings.append("both sides are the same target of the same run")

    def rate(rows: dict[str, _Light]) -> float | None:
        verdicts = [rows[k].passed for k in graded]
        return sum(1 for v in verdicts if v) / len(verdicts) if verdicts else None

    return SideComparison(
        a=a,
        b=b,
        paired=stats,
        pass_rate_a=rate(rows_a),
        pass_rate_b=rate(rows_b),
        flips=flips,
        p_mcnemar=mcnemar(flips["pass_to_fail"], flips["fail_to_pass"]),
        counts=counts,
        only_a=len(rows_a) - len(common),
        only_b=len(rows_b) - len(common),
        scores_a=[float(rows_a[k].score or 0.0) for k in graded],
        scores_b=[float(rows_b[k].score or 0.0) for k in graded],
        latency_a=[rows_a[k].latency_ms for k in common],
        latency_b=[rows_b[k].latency_ms for k in common],
        cost_a=sum(r.cost for r in rows_a.values()),
        cost_b=sum(r.cost for r in rows_b.values()),
        assertion_types=sorted(
            {t for r in rows_a.values() for t in r.types}
            | {t for r in rows_b.values() for t in r.types}
        ),
        warnings=warnings,
        rows=(rows_a, rows_b),
    )


@dataclass(frozen=True, slots=True)
class CaseFilter:
    """Which cases a page shows; every field narrows (all of them hold)."""

    status: tuple[CaseStatus, ...] = ()
    """Only these statuses (empty: all)."""
    assertion: str | None = None
    """Only cases where an assertion of this type failed on either side."""
    text: str | None = None
    """Only cases whose inputs or either output contain this text (case-insensitive)."""
    var: tuple[str, str] | None = None
    """Only cases whose variable ``name`` equals ``value``, as ``(name, value)`` (values are
    compared as text)."""
    metadata: tuple[str, str] | None = None
    """Only cases whose metadata ``key`` is ``value`` or, for a list (tags), holds it, as
    ``(key, value)`` (compared as text; either side's metadata counts)."""
    case: str | None = None
    """Not a filter: the page returned is the one holding this case (its id, else its index),
    whatever the offset asked for (deep links)."""

    @classmethod
    def parse_var(cls, text: str, *, what: str = "variable") -> tuple[str, str]:
        """``NAME=VALUE`` as a var (or metadata) filter.

        Raises:
            ValueError: no ``=``, or an empty name.
        """
        name, eq, value = text.partition("=")
        if not eq or not name.strip():
            raise ValueError(f"{what} filter {text!r} must look like NAME=VALUE")
        return name.strip(), value


def _meta_holds(metadata: dict[str, Any], key: str, value: str) -> bool:
    found = metadata.get(key)
    if isinstance(found, list):
        return value in (str(x) for x in found)
    return found is not None and str(found) == value


@dataclass(frozen=True, slots=True)
class CasePage:
    """One page of compared cases."""

    total: int
    """Cases that pass the filter."""
    offset: int
    rows: list[dict[str, Any]]
    """Per case: ``key`` (its identity across runs), ``case``, ``status``, ``vars``,
    ``metadata``, and
    ``a``/``b`` result dicts (output, passed, score, assertions with reasons, latency_ms,
    cost, error, human)."""


def _values(data: Any) -> str:
    """The values of vars (not their keys or JSON punctuation), as searchable text."""
    if isinstance(data, dict):
        return "\n".join(_values(v) for v in data.values())
    if isinstance(data, list):
        return "\n".join(_values(v) for v in data)
    return "" if data is None else str(data)


def _matching_text(runs: EvalRuns, comparison: SideComparison, text: str) -> set[tuple[str, int]]:
    """``(side, case index)`` of the cases whose variables' values or output contain
    ``text``, compared case-folded in Python (SQL's LIKE folds only ASCII on SQLite)."""
    pattern = text.casefold()
    found: set[tuple[str, int]] = set()
    with runs.db.connect() as conn:
        for side, rows in zip((comparison.a, comparison.b), comparison.rows, strict=True):
            for row in rows.values():
                if pattern in _values(row.vars).casefold():
                    found.add((str(side), row.index))
            query = select(col(EvalResult.case_index), col(EvalResult.output)).where(
                col(EvalResult.run_id) == side.run_id, col(EvalResult.target) == side.target
            )
            found |= {
                (str(side), int(i))
                for i, output in conn.execute(query)
                if pattern in (output or "").casefold()
            }
    return found


def case_page(
    runs: EvalRuns,
    comparison: SideComparison,
    *,
    where: CaseFilter | None = None,
    offset: int = 0,
    limit: int = 50,
) -> CasePage:
    """The cases both sides of ``comparison`` ran that pass ``where``, in case order, ``limit``
    from ``offset``: filtered over the verdicts the comparison read, with outputs and reasons
    read for the page only.

    Raises:
        ValueError: a bad offset or limit (1 to 500).
    """
    if offset < 0 or not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"page offset must be >= 0 and limit 1 to {MAX_PAGE}: {offset}, {limit}")
    where = where or CaseFilter()
    a, b = comparison.a, comparison.b
    rows_a, rows_b = comparison.rows
    texts = _matching_text(runs, comparison, where.text) if where.text else None
    chosen: list[tuple[str, CaseStatus]] = []
    for key, ra in rows_a.items():
        rb = rows_b.get(key)
        if rb is None:
            continue
        status = _status(ra, rb)
        if where.status and status not in where.status:
            continue
        if where.assertion and where.assertion not in (ra.failed_types | rb.failed_types):
            continue
        if where.var is not None and str(ra.vars.get(where.var[0])) != where.var[1]:
            continue
        if where.metadata is not None and not (
            _meta_holds(ra.metadata, *where.metadata) or _meta_holds(rb.metadata, *where.metadata)
        ):
            continue
        if (
            texts is not None
            and (str(a), ra.index) not in texts
            and (str(b), rb.index) not in texts
        ):
            continue
        chosen.append((key, status))
    if where.case is not None:
        wanted = [
            i
            for i, (k, _) in enumerate(chosen)
            if str(rows_a[k].case_id or rows_a[k].index) == where.case
        ]
        if wanted:  # the page that holds the case asked for
            offset = wanted[0] // limit * limit
    shown = chosen[offset : offset + limit]
    full_a = _full(runs, a, [rows_a[k].index for k, _ in shown])
    full_b = _full(runs, b, [rows_b[k].index for k, _ in shown])
    return CasePage(
        total=len(chosen),
        offset=offset,
        rows=[
            {
                "key": k,
                "case": rows_a[k].case_id or rows_a[k].index,
                "status": status,
                "vars": rows_a[k].vars,
                "metadata": rows_a[k].metadata or rows_b[k].metadata,
                "a": full_a[rows_a[k].index],
                "b": full_b[rows_b[k].index],
            }
            for k, status in shown
        ],
    )


def _full(runs: EvalRuns, side: Side, indexes: list[int]) -> dict[int, dict[str, Any]]:
    if not indexes:
        return {}
    query = select(EvalResult).where(
        col(EvalResult.run_id) == side.run_id,
        col(EvalResult.target) == side.target,
        col(EvalResult.case_index).in_(indexes),
    )
    with runs.db.read() as session:
        return {
            r.case_index: {
                "output": r.output,
                "passed": r.passed,
                "score": r.score,
                "error": r.error,
                "assertions": r.assertions,
                "latency_ms": r.latency_ms,
                "cost": r.cost,
                "cached": r.cached,
                "human": r.human,
            }
            for r in session.scalars(query)
        }


_WORDS = re.compile(r"\s+|[^\s]+")
MAX_DIFF_TOKENS = 4000
"""Past this many words and spaces on a side, the diff is by lines (the word matcher's time
grows with the square of the length)."""


def word_diff(a: str, b: str) -> list[tuple[Literal["same", "removed", "added"], str]]:
    """``b`` against ``a`` word by word (line by line past :data:`MAX_DIFF_TOKENS`, whole
    texts past that many lines): runs of ``(kind, text)`` that rebuild ``a`` from the ``same``
    and ``removed`` runs and ``b`` from the ``same`` and ``added`` ones."""
    wa, wb = _WORDS.findall(a), _WORDS.findall(b)
    if max(len(wa), len(wb)) > MAX_DIFF_TOKENS:
        wa, wb = a.splitlines(keepends=True), b.splitlines(keepends=True)
        if max(len(wa), len(wb)) > MAX_DIFF_TOKENS:
            return [("removed", a), ("added", b)] if a != b else [("same", a)]
    out: list[tuple[Literal["same", "removed", "added"], str]] = []
    matcher = difflib.SequenceMatcher(a=wa, b=wb, autojunk=False)
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            out.append(("same", "".join(wa[i1:i2])))
            continue
        if i2 > i1:
            out.append(("removed", "".join(wa[i1:i2])))
        if j2 > j1:
            out.append(("added", "".join(wb[j1:j2])))
    return out
