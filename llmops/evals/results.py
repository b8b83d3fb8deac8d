"""Stored eval runs: results per case, summaries with statistics, comparison, gates, exports.

Reach it as ``Workspace.evals``. Every run is an ``eval_run`` row with per-case ``eval_result``
rows (output, verdict, score, assertion details and judge reasoning, tokens, cost, latency) and,
for pairwise suites, ``eval_pair`` rows.
"""

from __future__ import annotations

import builtins
import json
import math
import statistics
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

from sqlalchemy import select
from sqlmodel import col

from llmops._record import versioned
from llmops.db import Database
from llmops.db.audit import record_event
from llmops.db.models import EvalPair, EvalResult, EvalRun, SQLModel
from llmops.db.timestamps import as_utc, utcnow
from llmops.errors import EvalRunNotFoundError
from llmops.evals.frames import Results
from llmops.evals.gate import GateReport
from llmops.evals.records import EvalStatus, ModelIdentity, ResultRow, RunSummary
from llmops.evals.stats import Paired, agreement, bootstrap_ci, paired

__all__ = ["EvalRunRecord", "EvalRuns", "GateReport", "new_eval_id"]


_ENTITY = "eval_run"
_Scores = dict[str, dict[int, tuple[bool | None, float | None]]]
"""Per target, per case index: ``(passed, score)``."""
_RESULT_TABLE = SQLModel.metadata.tables["eval_result"]
_PAIR_TABLE = SQLModel.metadata.tables["eval_pair"]


FORMAT_VERSION = 1
"""Version of the eval run record's JSON form (``eval show --json``, exports)."""


def new_eval_id() -> str:
    """``eval-`` and 12 random hex digits."""
    return f"eval-{uuid.uuid4().hex[:12]}"


@dataclass(slots=True, kw_only=True)
class EvalRunRecord:
    """A snapshot of one eval run."""

    run_id: str
    suite_name: str
    suite_path: str
    suite_digest: str
    status: EvalStatus
    targets: list[str]
    summary: dict[str, Any] | None
    """The stored summary (see :attr:`summary_model` for its typed form)."""
    cases: int
    errors: int
    created_by: str
    started_at: datetime
    ended_at: datetime | None
    models: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Per target: the exact model it used (:class:`~llmops.evals.records.ModelIdentity`)."""

    @property
    def summary_model(self) -> RunSummary | None:
        """The summary, typed (None until the run finished)."""
        return None if self.summary is None else RunSummary.model_validate(self.summary)

    @property
    def model_identities(self) -> dict[str, ModelIdentity]:
        """Per target: the exact model it used, typed."""
        return {t: ModelIdentity.model_validate(m) for t, m in self.models.items()}

    def to_json(self) -> dict[str, Any]:
        """The ``eval run`` contract: run_id, cases, errors, targets (with statistics)."""
        summary = self.summary or {}
        return versioned(
            {
                "run_id": self.run_id,
                "suite": self.suite_name,
                "suite_path": self.suite_path,
                "suite_digest": self.suite_digest,
                "status": self.status,
                "cases": self.cases,
                "errors": self.errors,
                "targets": [
                    {**t, "model": self.models.get(t["name"])}
                    for t in summary.get("targets", [{"name": t} for t in self.targets])
                ],
                **{k: v for k, v in summary.items() if k != "targets"},
                "models": self.models,
                "created_by": self.created_by,
                "started_at": self.started_at.isoformat(),
                "ended_at": self.ended_at.isoformat() if self.ended_at else None,
            },
            FORMAT_VERSION,
        )


def _record(row: EvalRun) -> EvalRunRecord:
    return EvalRunRecord(
        run_id=row.id,
        suite_name=row.suite_name,
        suite_path=row.suite_path,
        suite_digest=row.suite_digest,
        status=row.status,  # type: ignore[arg-type]
        targets=list(row.targets),
        summary=row.summary,
        cases=row.cases,
        errors=row.errors,
        created_by=row.created_by,
        started_at=as_utc(row.started_at),
        ended_at=as_utc(row.ended_at) if row.ended_at else None,
        models=dict((row.environment or {}).get("models") or {}),
    )


def _result_json(r: EvalResult) -> dict[str, Any]:
    return {
        "case_index": r.case_index,
        "case_id": r.case_id,
        "target": r.target,
        "vars": r.vars,
        "output": r.output,
        "passed": r.passed,
        "score": r.score,
        "error": r.error,
        "assertions": r.assertions,
        "prompt_tokens": r.prompt_tokens,
        "completion_tokens": r.completion_tokens,
        "cost": r.cost,
        "latency_ms": r.latency_ms,
        "cached": r.cached,
        "human": r.human,
    }


class EvalRuns:
    """Eval runs in the registry database."""

    def __init__(self, db: Database, *, actor: str) -> None:
        self.db = db
        self.actor = actor

    # -- writing ----------------------------------------------------------------------------

    def create(self, **fields: Any) -> EvalRunRecord:
        """Record a new run (status ``running``)."""
        row = EvalRun(status="running", created_by=self.actor, **fields)
        with self.db.write() as session:
            session.add(row)
            record_event(
                session,
                actor=self.actor,
                action="eval.start",
                entity_type=_ENTITY,
                entity_key=row.id,
                after={"suite_digest": row.suite_digest},
            )
            session.flush()
            return _record(row)

    def add_results(self, rows: Iterable[dict[str, Any]]) -> None:
        """Store finished cases (``kind`` ``result`` or ``pair`` rows), one transaction and one
        multi-row insert per kind and batch."""
        from sqlalchemy import insert

        results: list[dict[str, Any]] = []
        pairs: list[dict[str, Any]] = []
        for row in rows:
            data = {k: v for k, v in row.items() if k != "kind"}
            (pairs if row["kind"] == "pair" else results).append(data)
        with self.db.write() as session:
            if results:
                session.execute(insert(_RESULT_TABLE), results)
            if pairs:
                session.execute(insert(_PAIR_TABLE), pairs)

    def finish(
        self,
        run_id: str,
        *,
        status: EvalStatus,
        summary: RunSummary | None = None,
        cases: int = 0,
        errors: int = 0,
    ) -> EvalRunRecord:
        """Mark a run ended with its summary."""
        stored = summary.to_json() if summary is not None else None
        with self.db.write() as session:
            row = session.get(EvalRun, run_id)
            if row is None:
                raise EvalRunNotFoundError(f"no eval run {run_id!r}")
            row.status, row.summary, row.cases, row.errors = status, stored, cases, errors
            row.ended_at = row.updated_at = utcnow()
            record_event(
                session,
                actor=self.actor,
                action=f"eval.{status}",
                entity_type=_ENTITY,
                entity_key=run_id,
                after={"cases": cases, "errors": errors},
            )
            session.flush()
            return _record(row)

    def reopen(self, run_id: str) -> EvalRunRecord:
        """Mark a run running again (resume)."""
        with self.db.write() as session:
            row = session.get(EvalRun, run_id)
            if row is None:
                raise EvalRunNotFoundError(f"no eval run {run_id!r}", hint="see `llmops eval list`")
            row.status, row.updated_at = "running", utcnow()
            record_event(
                session,
                actor=self.actor,
                action="eval.resume",
                entity_type=_ENTITY,
                entity_key=run_id,
            )
            session.flush()
            return _record(row)

    # -- reading ----------------------------------------------------------------------------

    def get(self, run_id: str) -> EvalRunRecord:
        """One run.

        Raises:
            EvalRunNotFoundError: There is no run ``run_id``.
        """
        with self.db.read() as session:
            row = session.get(EvalRun, run_id)
            if row is None:
                raise EvalRunNotFoundError(f"no eval run {run_id!r}", hint="see `llmops eval list`")
            return _record(row)

    def suite_of(self, run_id: str) -> dict[str, Any]:
        """The resolved suite a run ran."""
        with self.db.read() as session:
            row = session.get(EvalRun, run_id)
            if row is None:
                raise EvalRunNotFoundError(f"no eval run {run_id!r}")
            return dict(row.suite)

    def list(self, *, limit: int = 50) -> builtins.list[EvalRunRecord]:
        """Runs, newest first."""
        query = select(EvalRun).order_by(col(EvalRun.started_at).desc()).limit(limit)
        with self.db.read() as session:
            return [_record(r) for r in session.scalars(query)]

    def done(self, run_id: str) -> set[tuple[int, str]]:
        """``(case_index, target)`` of every stored result (``target`` ``*pair*`` for pairs)."""
        with self.db.connect() as conn:
            done = {
                (int(i), str(t))
                for i, t in conn.execute(
                    select(col(EvalResult.case_index), col(EvalResult.target)).where(
                        col(EvalResult.run_id) == run_id
                    )
                )
            }
            done |= {
                (int(i), "*pair*")
                for (i,) in conn.execute(
                    select(col(EvalPair.case_index)).where(col(EvalPair.run_id) == run_id)
                )
            }
        return done

    def results(self, run_id: str, *, target: str | None = None) -> Results:
        """Per-case results in case order (streamed in pages): iterate for dicts, or call
        ``.to_pandas()`` for a DataFrame with ``vars.*`` and ``assertion.*`` columns."""
        return Results(self._results(run_id, target=target))

    def _results(self, run_id: str, *, target: str | None) -> Iterator[dict[str, Any]]:
        page, last = 1000, (-1, "")
        while True:
            query = (
                select(EvalResult)
                .where(col(EvalResult.run_id) == run_id)
                .order_by(col(EvalResult.case_index), col(EvalResult.target))
            )
            if target is not None:
                query = query.where(col(EvalResult.target) == target)
            query = query.where(
                (col(EvalResult.case_index) > last[0])
                | ((col(EvalResult.case_index) == last[0]) & (col(EvalResult.target) > last[1]))
            ).limit(page)
            with self.db.read() as session:
                rows = list(session.scalars(query))
            yield from (_result_json(r) for r in rows)
            if len(rows) < page:
                return
            last = (rows[-1].case_index, rows[-1].target)

    def rows(self, run_id: str, *, target: str | None = None) -> Iterator[ResultRow]:
        """The results as typed rows (:meth:`results` gives their JSON form)."""
        for result in self.results(run_id, target=target):
            yield ResultRow.model_validate(result)

    def pairs(self, run_id: str) -> builtins.list[dict[str, Any]]:
        """Pairwise judgements in case order."""
        query = (
            select(EvalPair)
            .where(col(EvalPair.run_id) == run_id)
            .order_by(col(EvalPair.case_index))
        )
        with self.db.read() as session:
            return [
                {
                    "case_index": p.case_index,
                    "verdict": p.verdict,
                    "consistent": p.consistent,
                    "details": p.details,
                    "human": p.human,
                }
                for p in session.scalars(query)
            ]

    # -- statistics -------------------------------------------------------------------------

    def _collect(self, run_id: str) -> tuple[_Scores, dict[str, dict[str, Any]]]:
        """Per target: every case's ``(passed, score)``, and its usage totals (one read)."""
        query = select(
            col(EvalResult.target), col(EvalResult.case_index), col(EvalResult.passed),
            col(EvalResult.score), col(EvalResult.prompt_tokens),
            col(EvalResult.completion_tokens), col(EvalResult.cost), col(EvalResult.latency_ms),
            col(EvalResult.cached),
        ).where(col(EvalResult.run_id) == run_id)  # fmt: skip
        scores: _Scores = {}
        usage: dict[str, dict[str, Any]] = {}
        with self.db.connect() as conn:
            for target, index, passed, score, pt, ct, cost, latency, cached in conn.execute(query):
                scores.setdefault(str(target), {})[int(index)] = (passed, score)
                u = usage.setdefault(str(target), _no_usage())
                u["prompt_tokens"] += pt
                u["completion_tokens"] += ct
                u["cost"] += cost
                if cached:
                    u["cached"] += 1
                else:
                    u["fresh"].append(latency)
        return scores, usage

    def summarize(
        self, run_id: str, targets: builtins.list[str], *, judge_samples: bool = False
    ) -> RunSummary:
        """Per-target statistics, paired comparison of targets, pairwise and calibration;
        ``judge_samples`` adds the spread of repeated judge verdicts (panels, epochs)."""
        scores, usage = self._collect(run_id)
        rows = []
        for name in targets:
            cases = scores.get(name, {})
            graded = [(p, s) for p, s in cases.values() if p is not None]
            passes = [1.0 if p else 0.0 for p, _ in graded]
            values = [float(s if s is not None else 0.0) for _, s in graded]
            score_ci, pass_ci = bootstrap_ci(values), bootstrap_ci(passes)
            u = usage.get(name) or _no_usage()
            rows.append({
                "name": name, "cases": len(cases), "graded": len(graded),
                "errors": len(cases) - len(graded), "pass_rate": _num(pass_ci.mean),
                "pass_rate_ci_low": _num(pass_ci.low), "pass_rate_ci_high": _num(pass_ci.high),
                "mean_score": _num(score_ci.mean), "ci_low": _num(score_ci.low),
                "ci_high": _num(score_ci.high), "prompt_tokens": u["prompt_tokens"],
                "completion_tokens": u["completion_tokens"], "cost": round(u["cost"], 6),
                "cached": u["cached"],
                "latency_ms_p50": statistics.median(u["fresh"]) if u["fresh"] else None,
            })  # fmt: skip
        summary: dict[str, Any] = {"targets": rows}
        if len(targets) >= 2:
            base = targets[0]
            summary["comparisons"] = [
                {"a": base, "b": other, **self._paired(scores, base, other).to_json()}
                for other in targets[1:]
            ]
        pairs = self.pairs(run_id)
        if pairs:
            summary.update(_pairwise_summary(pairs, targets))
            for row in rows:
                row["wins"] = summary["wins"].get(row["name"], 0)
                row["ties"] = summary["ties"]
                row["position_consistency"] = summary["position_consistency"]
        variance = self._judge_variance(run_id) if judge_samples else {}
        if variance:
            summary["judge_variance"] = variance
        calibration = self._calibration(run_id, pairs)
        if calibration:
            summary["calibration"] = calibration
        return RunSummary.model_validate(summary)

    @staticmethod
    def _paired(scores: _Scores, a: str, b: str) -> Paired:
        xa, xb = scores.get(a, {}), scores.get(b, {})
        common = sorted(
            i for i in xa.keys() & xb.keys() if xa[i][0] is not None and xb[i][0] is not None
        )
        return paired(
            [float(xa[i][1] or 0.0) for i in common], [float(xb[i][1] or 0.0) for i in common]
        )

    def _judge_variance(self, run_id: str) -> dict[str, Any]:
        """Spread of repeated judge samples (panels, epochs): per target, the mean over cases of
        the standard deviation of their samples' scores."""
        query = select(col(EvalResult.target), col(EvalResult.assertions)).where(
            col(EvalResult.run_id) == run_id
        )
        spreads: dict[str, list[float]] = {}
        with self.db.connect() as conn:
            for target, assertions in conn.execute(query):
                for a in assertions or []:
                    samples = a.get("judge_samples") or []
                    if len(samples) > 1:
                        spreads.setdefault(str(target), []).append(statistics.pstdev(samples))
        return {
            t: {"cases": len(v), "mean_std": statistics.fmean(v), "max_std": max(v)}
            for t, v in spreads.items()
        }

    def _calibration(self, run_id: str, pairs: builtins.list[dict[str, Any]]) -> dict[str, Any]:
        query = select(col(EvalResult.passed), col(EvalResult.human)).where(
            col(EvalResult.run_id) == run_id,
            col(EvalResult.human).is_not(None),
            col(EvalResult.passed).is_not(None),
        )
        with self.db.connect() as conn:
            labelled = conn.execute(query).all()
        out: dict[str, Any] = {}
        if labelled:
            judge = ["pass" if p else "fail" for p, _ in labelled]
            human = [str(h).lower() for _, h in labelled]
            out["single"] = agreement(judge, human).to_json()
        labelled_pairs = [p for p in pairs if p["human"] and p["verdict"]]
        if labelled_pairs:
            out["pairwise"] = agreement(
                [p["verdict"] for p in labelled_pairs],
                [str(p["human"]).upper() for p in labelled_pairs],
            ).to_json()
            consistent = [p["consistent"] for p in labelled_pairs if p["consistent"] is not None]
            out["pairwise"]["position_consistency"] = (
                sum(consistent) / len(consistent) if consistent else None
            )
        return out

    # -- comparison, gates, exports ---------------------------------------------------------

    def compare(self, a: str, b: str) -> dict[str, Any]:
        """Run ``b`` against run ``a``: per target, paired statistics over the cases both ran
        (matched by case id, else by variables), and the cases whose verdict changed."""
        ra, rb = self.get(a), self.get(b)
        keyed_a = {_case_key(r): r for r in self.results(a)}
        keyed_b = {_case_key(r): r for r in self.results(b)}
        out: dict[str, Any] = {"a": ra.run_id, "b": rb.run_id, "targets": [], "changed": []}
        for target in [t for t in rb.targets if t in ra.targets]:
            keys = sorted(
                k
                for k in keyed_a.keys() & keyed_b.keys()
                if k[1] == target
                and keyed_a[k]["passed"] is not None
                and keyed_b[k]["passed"] is not None
            )
            stats = paired(
                [float(keyed_a[k]["score"] or 0) for k in keys],
                [float(keyed_b[k]["score"] or 0) for k in keys],
            )
            out["targets"].append({"name": target, **stats.to_json(), "verdict": stats.verdict()})
            for k in keys:
                if keyed_a[k]["passed"] != keyed_b[k]["passed"]:
                    out["changed"].append(
                        {
                            "target": target,
                            "case": keyed_b[k]["case_id"] or keyed_b[k]["case_index"],
                            "vars": keyed_b[k]["vars"],
                            "a_passed": keyed_a[k]["passed"],
                            "b_passed": keyed_b[k]["passed"],
                            "a_output": keyed_a[k]["output"][:500],
                            "b_output": keyed_b[k]["output"][:500],
                        }
                    )
        return out

    def gate(
        self,
        run_id: str,
        *,
        baseline: str | None = None,
        max_drop: float = 0.0,
        min_pass_rate: float | None = None,
        max_errors: int | None = 0,
    ) -> GateReport:
        """Check a run against a baseline and thresholds (see :func:`llmops.evals.gate.gate`)."""
        from llmops.evals.gate import gate

        return gate(
            self, run_id, baseline=baseline, max_drop=max_drop, min_pass_rate=min_pass_rate,
            max_errors=max_errors,
        )  # fmt: skip

    def export(self, run_id: str, fmt: Literal["jsonl", "csv", "junit"]) -> Iterator[str]:
        """The run's results as JSONL, CSV or JUnit XML text, in pieces."""
        from llmops.evals.export import export_run

        return export_run(self, run_id, fmt)


def _no_usage() -> dict[str, Any]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "cached": 0, "fresh": []}


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _case_key(result: dict[str, Any]) -> tuple[str, str]:
    ident = result["case_id"] or json.dumps(result["vars"], sort_keys=True, ensure_ascii=False)
    return ident, result["target"]


def _pairwise_summary(
    pairs: builtins.list[dict[str, Any]], targets: builtins.list[str]
) -> dict[str, Any]:
    judged = [p for p in pairs if p["verdict"] is not None]
    consistent = [p for p in judged if p["consistent"] is not None]
    a_wins = sum(1 for p in judged if p["verdict"] == "A")
    b_wins = sum(1 for p in judged if p["verdict"] == "B")
    ties = sum(1 for p in judged if p["verdict"] == "TIE")
    from llmops.evals.stats import sign_test

    return {
        "pairwise": {
            "a": targets[0],
            "b": targets[1],
            "judged": len(judged),
            "judge_errors": len(pairs) - len(judged),
            "wins": {targets[0]: a_wins, targets[1]: b_wins},
            "ties": ties,
            "win_rate_b": (b_wins + 0.5 * ties) / len(judged) if judged else None,
            "p_sign": sign_test(b_wins, a_wins),
        },
        "position_consistency": (
            sum(1 for p in consistent if p["consistent"]) / len(consistent) if consistent else None
        ),
        "wins": {targets[0]: a_wins, targets[1]: b_wins},
        "ties": ties,
    }
