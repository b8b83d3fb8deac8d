"""CI gates on eval runs: a run against a baseline run and thresholds, errors counted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops._record import Record, versioned
from llmops.errors import EvalGateError, InputError
from llmops.evals.records import TargetSummary

if TYPE_CHECKING:
    from llmops.evals.results import EvalRuns

__all__ = ["GateReport", "gate"]


FORMAT_VERSION = 1
"""Version of the gate report's JSON form (``eval gate --json``)."""


@dataclass(slots=True, frozen=True)
class TargetGate(Record):
    """One target's numbers as the gate saw them."""

    name: str
    pass_rate: float | None
    errors: int
    baseline_pass_rate: float | None = None
    """The baseline run's pass rate (None: no baseline, or it graded nothing)."""


@dataclass(slots=True)
class GateReport(Record):
    """Whether a run may pass a CI gate, and why not."""

    run_id: str
    baseline: str | None
    problems: list[str]
    """One line per failed condition (empty: the gate passes)."""
    targets: list[TargetGate]

    _json_computed = ("ok",)

    @property
    def ok(self) -> bool:
        """True when nothing regressed."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "problems", "targets", ...}`` with the format version."""
        return versioned(Record.to_json(self), FORMAT_VERSION)

    def raise_if_failed(self) -> None:
        """Raise :class:`EvalGateError` listing the problems."""
        if self.problems:
            raise EvalGateError(f"eval gate failed for {self.run_id}: {'; '.join(self.problems)}")


def gate(
    runs: EvalRuns,
    run_id: str,
    *,
    baseline: str | None = None,
    max_drop: float = 0.0,
    min_pass_rate: float | None = None,
    max_errors: int | None = 0,
) -> GateReport:
    """Check a run against a baseline run and thresholds (see :class:`GateReport`).

    Errored cases count against the run: by default any error fails the gate
    (``max_errors`` allows that many per target; None ignores errors), and a target with
    no graded case fails every threshold it is checked against.
    """
    _check_thresholds(max_drop, min_pass_rate, max_errors)
    if max_drop and not baseline:
        raise InputError("--max-drop needs --baseline RUN_ID (a drop is measured from it)")
    run = runs.get(run_id)
    if run.summary is None:
        raise InputError(
            f"eval run {run_id} has no summary (status {run.status})",
            hint=f"finish it first: llmops eval run SUITE --resume {run_id}",
        )
    summary = run.summary_model
    assert summary is not None
    base_rows: dict[str, TargetSummary] = {}
    if baseline:
        base = runs.get(baseline).summary_model
        base_rows = {t.name: t for t in base.targets} if base is not None else {}
    problems: list[str] = []
    report_rows = []
    for row in summary.targets:
        name, rate = row.name, row.pass_rate
        before = base_rows[name].pass_rate if name in base_rows else None
        if rate is None:
            problems.append(f"{name}: no case was graded ({row.errors} of {row.cases} errored)")
        if baseline and name not in base_rows:
            problems.append(f"{name}: the baseline {baseline} has no target {name!r} to compare")
        elif name in base_rows and before is None:
            problems.append(
                f"{name}: the baseline {baseline} graded no case of it, so there is"
                " nothing to compare against"
            )
        elif before is not None and rate is not None and before - rate > max_drop + 1e-12:
            problems.append(
                f"{name}: pass rate {rate:.3f} is below the baseline's {before:.3f} by"
                f" {before - rate:.3f}, more than the {max_drop:g} allowed (--max-drop)"
            )
        if min_pass_rate is not None and rate is not None and rate < min_pass_rate:
            problems.append(
                f"{name}: pass rate {rate:.3f} is below the minimum {min_pass_rate:g}"
                " (--min-pass-rate)"
            )
        if max_errors is not None and row.errors > max_errors:
            problems.append(
                f"{name}: {row.errors} errored case(s), over the {max_errors} allowed"
                " (see `llmops eval show`; --max-errors N to allow some)"
            )
        report_rows.append(TargetGate(name, rate, row.errors, before))
    return GateReport(run_id, baseline, problems, report_rows)


def _check_thresholds(max_drop: float, min_pass_rate: float | None, max_errors: int | None) -> None:
    """NaN compares false with everything, so ``--max-drop nan`` would pass any run."""
    import math

    def fraction(value: float) -> bool:
        return math.isfinite(value) and 0 <= value <= 1

    if not fraction(max_drop):
        raise InputError(f"--max-drop must be a number from 0 to 1, got {max_drop}")
    if min_pass_rate is not None and not fraction(min_pass_rate):
        raise InputError(f"--min-pass-rate must be a number from 0 to 1, got {min_pass_rate}")
    if max_errors is not None and max_errors < 0:
        raise InputError(f"--max-errors must be zero or more, got {max_errors}")
