"""Stored eval runs: results per case, summaries with statistics, comparison, gates, exports.

Reach it as ``Workspace.evals``. Every run is an ``eval_run`` row with per-case ``eval_result``
rows (output, verdict, score, assertion details and judge reasoning, tokens, cost, latency) and,
for pairwise suites, ``eval_pair`` rows.
"""

from __future__ import annotations

import builtins
import math
import statistics
import uuid
from collections.abc import Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any, Literal

from sqlalchemy import func, select
from sqlmodel import col

from llmops._display import Listing, store_repr
from llmops.db import Database
from llmops.db.audit import record_event
from llmops.db.models import EvalPair, EvalResult, EvalRun, EvalTarget, SQLModel
from llmops.db.timestamps import as_utc, parse_when, utcnow
from llmops.errors import EvalRunNotFoundError
from llmops.evals.frames import Results
from llmops.evals.gate import GateReport
from llmops.evals.records import EvalRunRecord, EvalStatus, ResultRow, RunSummary
from llmops.evals.stats import Paired, agreement, bootstrap_ci, paired

__all__ = ["LATEST", "EvalRuns", "GateReport", "new_eval_id"]

LATEST = "latest"
"""A run reference meaning the newest run (``llmops eval show latest``)."""


_ENTITY = "eval_run"
_Scores = dict[str, dict[int, tuple[bool | None, float | None]]]
"""Per target, per case index: ``(passed, score)``."""
_RESULT_TABLE = SQLModel.metadata.tables["eval_result"]
_PAIR_TABLE = SQLModel.metadata.tables["eval_pair"]


def new_eval_id() -> str:
    """``eval-`` and 12 random hex digits."""
    return f"eval-{uuid.uuid4().hex[:12]}"


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
        options=dict((row.environment or {}).get("options") or {}),
    )


def _result_json(r: EvalResult) -> dict[str, Any]:
    return {
        "case_index": r.case_index,
        "case_id": r.case_id,
        "target": r.target,
        "vars": r.vars,
        "metadata": r.case_metadata or {},
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

    def _create(self, **fields: Any) -> EvalRunRecord:
        """Record a new run (status ``running``) and index the model digests its targets run
        (the evidence promotions look up)."""
        row = EvalRun(status="running", created_by=self.actor, **fields)
        with self.db.write() as session:
            session.add(row)
            session.flush()
            for target, identity in (row.environment.get("models") or {}).items():
                for role, digest, ref in _EVIDENCE_KEYS:
                    if identity.get(digest):
                        found = identity[digest]
                        session.add(
                            EvalTarget(run_id=row.id, target=target, role=role, digest=found,
                                       ref=identity.get(ref))
                        )  # fmt: skip
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

    def _add_results(self, rows: Iterable[dict[str, Any]]) -> None:
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

    def _finish(
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

    def _reopen(self, run_id: str) -> EvalRunRecord:
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
        """One run (``latest``: the newest).

        Raises:
            EvalRunNotFoundError: There is no run ``run_id``.
        """
        run_id = self._resolve(run_id)
        with self.db.read() as session:
            row = session.get(EvalRun, run_id)
            if row is None:
                raise EvalRunNotFoundError(f"no eval run {run_id!r}", hint="see `llmops eval list`")
            return _record(row)

    def _resolve(self, run_id: str) -> str:
        """``latest`` as the newest run's id (other ids as they are)."""
        if run_id != LATEST:
            return run_id
        with self.db.read() as session:
            newest = session.scalar(
                select(col(EvalRun.id)).order_by(col(EvalRun.started_at).desc()).limit(1)
            )
        if newest is None:
            raise EvalRunNotFoundError("there is no eval run yet", hint="run `llmops eval run`")
        return str(newest)

    def suite_of(self, run_id: str) -> dict[str, Any]:
        """The resolved suite a run ran."""
        run_id = self._resolve(run_id)
        with self.db.read() as session:
            row = session.get(EvalRun, run_id)
            if row is None:
                raise EvalRunNotFoundError(f"no eval run {run_id!r}")
            return dict(row.suite)

    def list(self, *, limit: int = 50) -> Listing[EvalRunRecord]:
        """Runs, newest first (``.to_pandas()`` for a DataFrame)."""
        return self.search(limit=limit)

    def search(
        self,
        *,
        suite: str | None = None,
        status: EvalStatus | None = None,
        model: str | None = None,
        since: datetime | timedelta | str | None = None,
        until: datetime | timedelta | str | None = None,
        limit: int = 50,
    ) -> Listing[EvalRunRecord]:
        """Runs matching every filter given, newest first (as ``mlflow.search_runs``).

        Args:
            suite: The suite's name.
            status: ``running``, ``completed`` or ``failed``.
            model: A target ran this model or adapter: ``name`` (any version), ``name@3``,
                or a digest.
            since: Started at or after: a datetime, a timedelta or ``"7d"`` ago, ISO text.
            until: Started before.
            limit: At most this many runs.
        """
        query = select(EvalRun).order_by(col(EvalRun.started_at).desc())
        if suite is not None:
            query = query.where(col(EvalRun.suite_name) == suite)
        if status is not None:
            query = query.where(col(EvalRun.status) == status)
        if since is not None:
            query = query.where(col(EvalRun.started_at) >= parse_when(since, what="since"))
        if until is not None:
            query = query.where(col(EvalRun.started_at) < parse_when(until, what="until"))
        if model is None:
            query = query.limit(limit)
        found: Listing[EvalRunRecord] = Listing()
        with self.db.read() as session:
            for row in session.scalars(query):
                record = _record(row)
                if model is None or any(_ran(m, model) for m in record.models.values()):
                    found.append(record)
                    if len(found) >= limit:
                        break
        return found

    def __repr__(self) -> str:
        with self.db.read() as session:
            count = session.scalar(select(func.count()).select_from(EvalRun)) or 0
        newest = self.list(limit=1)
        latest = None
        if newest:
            latest = f"{newest[0].run_id} ({newest[0].suite_name}, {newest[0].status})"
        methods = ".list(), .search(suite=, model=, since=), .get(id), .results(id)"
        return store_repr("EvalRuns", count, latest, methods)

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
        return Results(self._results(self._resolve(run_id), target=target))

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
        run_id = self._resolve(run_id)
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
        from llmops.evals.scorers import MODEL_GRADED

        query = select(col(EvalResult.assertions), col(EvalResult.human)).where(
            col(EvalResult.run_id) == run_id, col(EvalResult.human).is_not(None)
        )
        with self.db.connect() as conn:
            labelled = conn.execute(query).all()
        # A case's label is about one answer (pass/fail) or about a pair (A/B/TIE): each kind
        # calibrates only the judgements it is about. A single answer's judgement is what its
        # judge-graded assertions said (all passed), never its other checks.
        single = []
        for assertions, h in labelled:
            graded = [a.get("passed") for a in assertions or [] if a.get("type") in MODEL_GRADED]
            if str(h).lower() in ("pass", "fail") and graded and None not in graded:
                single.append((all(graded), str(h).lower()))
        out: dict[str, Any] = {}
        if single:
            judge = ["pass" if p else "fail" for p, _ in single]
            human = [h for _, h in single]
            out["single"] = agreement(judge, human).to_json()
        labelled_pairs = [
            p for p in pairs if str(p["human"]).upper() in ("A", "B", "TIE") and p["verdict"]
        ]
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

    def recalibrate(self, run_id: str) -> dict[str, Any]:
        """Recompute the stored summary's judge calibration from the cases' human labels (after
        reviewers' labels were written onto them); the new calibration."""
        run_id = self._resolve(run_id)
        calibration = self._calibration(run_id, self.pairs(run_id))
        with self.db.write() as session:
            row = session.get(EvalRun, run_id)
            if row is not None and row.summary is not None:
                row.summary = {**row.summary, "calibration": calibration}
        return calibration

    # -- comparison, gates, exports ---------------------------------------------------------

    def compare(self, a: str, b: str) -> dict[str, Any]:
        """Run ``b`` against run ``a`` (see :func:`llmops.evals.compare.compare_runs`)."""
        from llmops.evals.compare import compare_runs

        return compare_runs(self, self._resolve(a), self._resolve(b))

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
            self, self._resolve(run_id), baseline=baseline, max_drop=max_drop,
            min_pass_rate=min_pass_rate, max_errors=max_errors,
        )  # fmt: skip

    def export(self, run_id: str, fmt: Literal["jsonl", "csv", "junit"]) -> Iterator[str]:
        """The run's results as JSONL, CSV or JUnit XML text, in pieces."""
        from llmops.evals.export import export_run

        return export_run(self, self._resolve(run_id), fmt)


_EVIDENCE_KEYS = (
    ("model", "digest", "ref"),
    ("adapter", "adapter_digest", "adapter_ref"),
    ("declared", "model_version_digest", "model_version"),
)
"""``(role, digest key, ref key)`` of a model identity, as indexed in ``eval_target``."""


def _ran(identity: dict[str, Any], model: str) -> bool:
    """Whether a target's model identity is ``model`` (a name, ``name@version`` or digest)."""
    for key in ("ref", "adapter_ref"):
        ref = identity.get(key) or ""
        if model in (ref, ref.split("@")[0]):
            return True
    return model in (identity.get("name"), identity.get("adapter"), identity.get("digest"),
                     identity.get("adapter_digest"))  # fmt: skip


def _no_usage() -> dict[str, Any]:
    return {"prompt_tokens": 0, "completion_tokens": 0, "cost": 0.0, "cached": 0, "fresh": []}


def _num(value: float) -> float | None:
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


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
