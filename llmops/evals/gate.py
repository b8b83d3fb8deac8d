"""CI gates on eval runs: a run against a baseline run and thresholds, errors counted."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops.errors import EvalGateError, InputError

if TYPE_CHECKING:
    from llmops.evals.results import EvalRuns

__all__ = ["GateReport", "gate"]


@dataclass(slots=True)
class GateReport:
    """Whether a run may pass a CI gate, and why not."""

    run_id: str
    baseline: str | None
    problems: list[str]
    targets: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        """True when nothing regressed."""
        return not self.problems

    def to_json(self) -> dict[str, Any]:
        """``{"ok", "problems", "targets", ...}``."""
        return {
            "ok": self.ok,
            "run_id": self.run_id,
            "baseline": self.baseline,
            "problems": self.problems,
            "targets": self.targets,
        }

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
    run = runs.get(run_id)
    if run.summary is None:
        raise InputError(
            f"eval run {run_id} has no summary (status {run.status})",
            hint=f"finish it first: llmops eval run SUITE --resume {run_id}",
        )
    rows = {t["name"]: t for t in run.summary["targets"]}
    base_rows: dict[str, Any] = {}
    if baseline:
        base = runs.get(baseline)
        base_rows = {t["name"]: t for t in (base.summary or {}).get("targets", [])}
    problems: list[str] = []
    report_rows = []
    for name, row in rows.items():
        rate = row["pass_rate"]
        errors = int(row["errors"])
        entry: dict[str, Any] = {"name": name, "pass_rate": rate, "errors": errors}
        if rate is None:
            problems.append(f"{name}: no case was graded ({errors} of {row['cases']} errored)")
        if name in base_rows:
            before = base_rows[name]["pass_rate"]
            entry["baseline_pass_rate"] = before
            if before is None:
                problems.append(
                    f"{name}: the baseline {baseline} graded no case of it, so there is"
                    " nothing to compare against"
                )
            elif rate is not None and before - rate > max_drop + 1e-12:
                problems.append(
                    f"{name}: pass rate {rate:.3f} dropped {before - rate:.3f} "
                    f"below the baseline {before:.3f} (max drop {max_drop})"
                )
        elif baseline:
            entry["baseline_pass_rate"] = None
        if min_pass_rate is not None and rate is not None and rate < min_pass_rate:
            problems.append(f"{name}: pass rate {rate:.3f} under {min_pass_rate}")
        if max_errors is not None and errors > max_errors:
            problems.append(
                f"{name}: {errors} errored case(s), over the {max_errors} allowed"
                " (see `llmops eval show`; --max-errors N to allow some)"
            )
        report_rows.append(entry)
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
