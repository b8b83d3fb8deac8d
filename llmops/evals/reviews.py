"""Human review: people judge answers, and their labels calibrate the judges.

Reach it as ``Workspace.reviews``. An *item* is two answers to the same input (``pairwise``:
from an eval run's pairwise judgements, from two targets of a run, or from the gateway's
mirrored shadow pairs) or one answer (``single``). A reviewer labels a pairwise item ``A``,
``B``, ``tie`` or ``both_bad`` and a single one ``pass`` or ``fail``; the order the two answers
were shown in is randomized per item and reviewer and stored with the label (choices always
name the item's answers in stored order). Several reviewers may label one item; a reviewer
relabelling replaces their label, and every change is in the audit log.

From the labels: agreement among reviewers (Krippendorff's alpha), agreement of the automatic
judge with the reviewers' majority (Cohen's kappa), a Bradley–Terry ranking of the compared
models, the majority written back to an eval run as its cases' ``human`` labels (the run's
calibration numbers then use them), and DPO preference rows.
"""

from __future__ import annotations

import builtins
import uuid
from collections.abc import Iterator
from typing import Any, Literal

from sqlalchemy import func, select
from sqlmodel import col

from llmops._record import versioned
from llmops._redact import redact
from llmops.db import Database
from llmops.db.audit import record_event
from llmops.db.models import EvalPair, EvalResult, ReviewItem, ReviewLabel, ShadowPair
from llmops.db.timestamps import utcnow
from llmops.errors import InputError, NotFoundError
from llmops.evals.ranking import Comparison, Ranking, bradley_terry
from llmops.evals.review_records import (
    Label,
    ReviewAgreement,
    ReviewItemRecord,
    answer,
    item_record,
    label_record,
    majority,
    model_name,
    new_item_id,
    reviewer_name,
    shown_order,
)
from llmops.evals.stats import agreement, krippendorff_alpha

__all__ = [
    "PAIRWISE_CHOICES",
    "SINGLE_CHOICES",
    "Choice",
    "Label",
    "ReviewAgreement",
    "ReviewItemRecord",
    "Reviews",
]

Choice = Literal["A", "B", "tie", "both_bad", "pass", "fail"]
PAIRWISE_CHOICES = ("A", "B", "tie", "both_bad")
SINGLE_CHOICES = ("pass", "fail")
EXPORT_FORMAT = 1
_ENTITY = "review_item"


class Reviews:
    """Review items and labels in the registry database."""

    def __init__(self, db: Database, *, actor: str) -> None:
        self.db = db
        self.actor = actor

    def __repr__(self) -> str:
        with self.db.connect() as conn:
            items = conn.execute(select(func.count()).select_from(ReviewItem)).scalar_one()
            labels = conn.execute(select(func.count()).select_from(ReviewLabel)).scalar_one()
        return (
            f"Reviews({items} item(s), {labels} label(s); .from_run(id), .from_shadow(model),"
            " .queue(reviewer), .add(item, choice, reviewer), .agreement(), .ranking())"
        )

    # -- items ------------------------------------------------------------------------------

    def _insert(self, rows: builtins.list[ReviewItem], *, limit: int | None = None) -> int:
        """Add the items whose source key is new, at most ``limit`` of them; the number
        added (a limit counts new items, so adding again goes on where the last one stopped)."""
        if not rows:
            return 0
        keys = [r.source_key for r in rows]
        with self.db.write() as session:
            known = set(
                session.scalars(
                    select(col(ReviewItem.source_key)).where(col(ReviewItem.source_key).in_(keys))
                )
            )
            fresh = [r for r in rows if r.source_key not in known][:limit]
            session.add_all(fresh)
            for r in fresh:
                record_event(
                    session,
                    actor=self.actor,
                    action="review.item",
                    entity_type=_ENTITY,
                    entity_key=r.id,
                    after={"source_key": r.source_key, "kind": r.kind},
                )
        return len(fresh)

    def _item(self, **fields: Any) -> ReviewItem:
        return ReviewItem(id=new_item_id(), created_by=self.actor, created_at=utcnow(), **fields)

    def add_pair(
        self,
        input: dict[str, Any] | str,
        a: str,
        b: str,
        *,
        models: tuple[str, str] = ("A", "B"),
        key: str | None = None,
    ) -> ReviewItemRecord:
        """Add a pairwise item by hand: two answers ``a`` and ``b`` to ``input`` (a text, or
        ``{"vars": ...}`` / ``{"messages": ...}``). ``key`` makes adding it again a no-op."""
        if str(models[0]) == str(models[1]):
            raise ValueError(f"the two answers need different model names, got {models[0]!r}")
        return self._manual("pairwise", input, [(models[0], a), (models[1], b)], key)

    def add_single(
        self,
        input: dict[str, Any] | str,
        answer: str,
        *,
        model: str = "model",
        key: str | None = None,
    ) -> ReviewItemRecord:
        """Add a single-answer item by hand (labelled ``pass`` or ``fail``)."""
        return self._manual("single", input, [(model, answer)], key)

    def _manual(
        self,
        kind: str,
        input: dict[str, Any] | str,
        answers: builtins.list[tuple[str, str]],
        key: str | None,
    ) -> ReviewItemRecord:
        body = {"text": input} if isinstance(input, str) else dict(input)
        source_key = f"manual:{key}" if key else f"manual:{uuid.uuid4().hex}"
        self._insert(
            [
                self._item(
                    kind=kind,
                    source="manual",
                    source_key=source_key,
                    input=body,
                    answers=[answer(m, t) for m, t in answers],
                )
            ]
        )
        return self._by_key(source_key)

    def _by_key(self, source_key: str) -> ReviewItemRecord:
        with self.db.read() as session:
            row = session.scalars(
                select(ReviewItem).where(col(ReviewItem.source_key) == source_key)
            ).one()
            return item_record(row)

    def from_run(self, run_id: str, *, limit: int | None = None) -> int:
        """Items from an eval run (``latest``: the newest): its pairwise judgements when it has
        them, else the answers of its first two targets to each case, else (one target) single
        items. Returns how many were new (adding a run twice adds nothing).

        Raises:
            EvalRunNotFoundError: no such run.
        """
        record = self._run(run_id)
        run_id, targets = record.run_id, list(record.targets)
        models = {t: model_name(t, record.models.get(t)) for t in targets}
        with self.db.read() as session:
            results = session.scalars(
                select(EvalResult)
                .where(col(EvalResult.run_id) == run_id)
                .order_by(col(EvalResult.case_index))
            ).all()
            pairs = {
                p.case_index: p
                for p in session.scalars(select(EvalPair).where(col(EvalPair.run_id) == run_id))
            }
        by_case: dict[int, dict[str, EvalResult]] = {}
        for r in results:
            by_case.setdefault(r.case_index, {})[r.target] = r
        rows: builtins.list[ReviewItem] = []
        for index, given in by_case.items():
            answers = {t: r for t, r in given.items() if r.passed is not None and not r.error}
            if not answers:
                continue  # an errored case has no answer worth judging
            first = next(iter(answers.values()))
            common = {"run_id": run_id, "case_index": index, "input": {"vars": first.vars}}
            if len(targets) >= 2 and all(t in answers for t in targets[:2]):
                a, b = answers[targets[0]], answers[targets[1]]
                pair = pairs.get(index)
                rows.append(
                    self._item(
                        kind="pairwise",
                        source="eval_pair" if pair else "eval_targets",
                        source_key=f"{run_id}:{index}:pair",
                        judge=pair.verdict if pair else None,
                        answers=[
                            answer(models[targets[0]], a.output, target=targets[0]),
                            answer(models[targets[1]], b.output, target=targets[1]),
                        ],
                        **common,
                    )
                )
            elif len(targets) == 1:
                r = answers[targets[0]]
                judge = None if r.passed is None else ("pass" if r.passed else "fail")
                rows.append(
                    self._item(
                        kind="single",
                        source="eval_result",
                        source_key=f"{run_id}:{index}:single",
                        judge=judge,
                        answers=[answer(models[targets[0]], r.output, target=targets[0])],
                        **common,
                    )
                )
        return self._insert(rows, limit=limit)

    def _run(self, run_id: str) -> Any:
        from llmops.evals.results import EvalRuns

        return EvalRuns(self.db, actor=self.actor).get(run_id)

    def from_shadow(self, logical: str, *, limit: int = 100) -> int:
        """Items from the gateway's mirrored pairs of ``logical`` (A the stable arm, B the
        candidate; the newest ``limit`` pairs not queued yet that have both answers from two
        different models). Returns how many were new."""
        known = select(col(ReviewItem.source_key)).where(col(ReviewItem.source) == "shadow_pair")
        with self.db.read() as session:
            queued = {int(k.split(":", 1)[1]) for k in session.scalars(known)}
            ids = [
                i
                for i in session.scalars(
                    select(col(ShadowPair.id))
                    .where(
                        col(ShadowPair.logical) == logical,
                        col(ShadowPair.candidate_answer).is_not(None),
                        col(ShadowPair.stable_model) != col(ShadowPair.candidate_model),
                    )
                    .order_by(col(ShadowPair.id).desc())
                )
                if i not in queued
            ][:limit]
            pairs = session.scalars(select(ShadowPair).where(col(ShadowPair.id).in_(ids))).all()
        verdicts = {"stable": "A", "candidate": "B", "tie": "TIE"}
        rows = [
            self._item(
                kind="pairwise",
                source="shadow_pair",
                source_key=f"shadow:{p.id}",
                input={"messages": p.messages, "logical": logical},
                answers=[
                    answer(p.stable_model, p.stable_answer),
                    answer(p.candidate_model, p.candidate_answer),
                ],
                judge=verdicts.get(p.verdict or ""),
            )
            for p in sorted(pairs, key=lambda p: -(p.id or 0))
        ]
        return self._insert(rows)

    def get(self, item: str) -> ReviewItemRecord:
        """One item.

        Raises:
            NotFoundError: no such item.
        """
        with self.db.read() as session:
            row = session.get(ReviewItem, item)
            if row is None:
                raise NotFoundError(
                    f"review item {item!r} does not exist",
                    hint="list items with `llmops review items`",
                )
            count = session.scalar(
                select(func.count())
                .select_from(ReviewLabel)
                .where(col(ReviewLabel.item_id) == item)
            )
            return item_record(row, labels=int(count or 0))

    def items(
        self,
        *,
        run_id: str | None = None,
        source: str | None = None,
        offset: int = 0,
        limit: int = 100,
    ) -> builtins.list[ReviewItemRecord]:
        """Items, oldest first, with their label counts."""
        counts = _label_counts()
        query = (
            select(ReviewItem, counts.c.n)
            .outerjoin(counts, counts.c.item_id == col(ReviewItem.id))
            .order_by(col(ReviewItem.created_at), col(ReviewItem.id))
            .offset(offset)
            .limit(limit)
        )
        if run_id is not None:
            query = query.where(col(ReviewItem.run_id) == run_id)
        if source is not None:
            query = query.where(col(ReviewItem.source) == source)
        with self.db.read() as session:
            return [item_record(row, labels=int(n or 0)) for row, n in session.execute(query)]

    def queue(
        self,
        reviewer: str,
        *,
        kind: Literal["pairwise", "single"] | None = None,
        run_id: str | None = None,
        limit: int = 20,
    ) -> builtins.list[ReviewItemRecord]:
        """Items ``reviewer`` has not labelled yet, the least labelled first (so several
        reviewers spread over the queue), each with the order to show its answers in."""
        reviewer = reviewer_name(reviewer)
        mine = select(col(ReviewLabel.item_id)).where(col(ReviewLabel.reviewer) == reviewer)
        counts = _label_counts()
        query = (
            select(ReviewItem, counts.c.n)
            .outerjoin(counts, counts.c.item_id == col(ReviewItem.id))
            .where(col(ReviewItem.id).not_in(mine))
            .order_by(func.coalesce(counts.c.n, 0), col(ReviewItem.created_at), col(ReviewItem.id))
            .limit(limit)
        )
        if kind is not None:
            query = query.where(col(ReviewItem.kind) == kind)
        if run_id is not None:
            query = query.where(col(ReviewItem.run_id) == run_id)
        with self.db.read() as session:
            return [
                item_record(row, labels=int(n or 0), shown=shown_order(row.id, reviewer))
                for row, n in session.execute(query)
            ]

    # -- labels -----------------------------------------------------------------------------

    def add(
        self,
        item: str,
        choice: str,
        reviewer: str,
        *,
        comment: str = "",
        shown: Literal["AB", "BA"] | None = None,
    ) -> Label:
        """Record ``reviewer``'s ``choice`` for ``item`` (replacing their earlier label).

        ``choice`` names the item's answers in stored order (``A`` is ``answers[0]``) whatever
        the order shown; ``shown`` records that order (default: the one :meth:`queue` gave).

        Raises:
            NotFoundError: no such item.
            InputError: a choice that does not fit the item's kind, or an empty reviewer.
        """
        reviewer = reviewer_name(reviewer)
        if shown not in (None, "AB", "BA"):
            raise InputError(f"shown must be AB or BA, got {shown!r}")
        if len(comment) > 10_000:
            raise InputError(f"a review comment is at most 10,000 characters, got {len(comment)}")
        try:
            comment.encode("utf-8")
        except UnicodeEncodeError:
            raise InputError(
                "the review comment is not valid text (an unpaired surrogate)"
            ) from None
        comment = redact(comment)  # a pasted API key is not kept
        from sqlalchemy.exc import IntegrityError

        try:
            return self._label(item, choice, reviewer, comment, shown)
        except IntegrityError:
            # another writer added this reviewer's label between our look and our insert:
            # it exists now, so this attempt replaces it
            return self._label(item, choice, reviewer, comment, shown)

    def _label(
        self, item: str, choice: str, reviewer: str, comment: str, shown: str | None
    ) -> Label:
        with self.db.write() as session:
            row = session.get(ReviewItem, item)
            if row is None:
                raise NotFoundError(
                    f"review item {item!r} does not exist",
                    hint="list items with `llmops review items`",
                )
            allowed = PAIRWISE_CHOICES if row.kind == "pairwise" else SINGLE_CHOICES
            if choice not in allowed:
                raise InputError(
                    f"choice {choice!r} does not fit {row.kind} item {item}: use one of "
                    + ", ".join(allowed)
                )
            label = session.scalars(
                select(ReviewLabel).where(
                    col(ReviewLabel.item_id) == item, col(ReviewLabel.reviewer) == reviewer
                )
            ).first()
            before = None if label is None else {"choice": label.choice, "comment": label.comment}
            if label is None:
                label = ReviewLabel(item_id=item, reviewer=reviewer, choice=choice)
                session.add(label)
            label.choice, label.comment, label.at = choice, comment, utcnow()
            label.shown = shown or shown_order(item, reviewer)
            record_event(
                session,
                actor=self.actor,
                action="review.label",
                entity_type=_ENTITY,
                entity_key=item,
                before=before,
                after={"choice": choice, "reviewer": reviewer, "shown": label.shown},
            )
            session.flush()
            return label_record(label)

    def version(self) -> tuple[int, int, int, str]:
        """What changes whenever an item or a label is added or relabelled: a cache key for
        what is computed from the labels."""
        query = select(func.count(), func.max(col(ReviewLabel.id)), func.max(col(ReviewLabel.at)))
        items = select(func.count()).select_from(ReviewItem)
        with self.db.connect() as conn:
            count, last, at = conn.execute(query).one()
            total = int(conn.execute(items).scalar_one())
        return int(count), total, int(last or 0), str(at)

    def labels(
        self, *, item: str | None = None, reviewer: str | None = None
    ) -> builtins.list[Label]:
        """Labels, oldest first."""
        query = select(ReviewLabel).order_by(col(ReviewLabel.at), col(ReviewLabel.id))
        if item is not None:
            query = query.where(col(ReviewLabel.item_id) == item)
        if reviewer is not None:
            query = query.where(col(ReviewLabel.reviewer) == reviewer)
        with self.db.read() as session:
            return [label_record(r) for r in session.scalars(query)]

    def _labelled(self) -> builtins.list[tuple[ReviewItem, builtins.list[str]]]:
        """Every labelled item with its labels' choices."""
        query = select(ReviewItem, col(ReviewLabel.choice)).join(
            ReviewLabel, col(ReviewLabel.item_id) == col(ReviewItem.id)
        )
        grouped: dict[str, tuple[ReviewItem, builtins.list[str]]] = {}
        with self.db.read() as session:
            for row, choice in session.execute(query):
                grouped.setdefault(row.id, (row, []))[1].append(choice)
        return list(grouped.values())

    def export(self) -> Iterator[dict[str, Any]]:
        """Every label with its item (input, both answers and models, the judge), as JSON
        records: one JSONL line each."""
        query = (
            select(ReviewLabel, ReviewItem)
            .join(ReviewItem, col(ReviewItem.id) == col(ReviewLabel.item_id))
            .order_by(col(ReviewLabel.id))
        )
        with self.db.read() as session:
            for label, row in session.execute(query):
                yield versioned(
                    {
                        **label_record(label).to_json(),
                        "kind": row.kind,
                        "source": row.source,
                        "source_key": row.source_key,
                        "run_id": row.run_id,
                        "case_index": row.case_index,
                        "input": row.input,
                        "answers": row.answers,
                        "judge": row.judge,
                    },
                    EXPORT_FORMAT,
                )

    # -- what the labels say ----------------------------------------------------------------

    def agreement(self, *, run_id: str | None = None) -> ReviewAgreement:
        """Agreement among reviewers, and of the judge with their majority."""
        labelled = [
            (row, choices)
            for row, choices in self._labelled()
            if run_id is None or row.run_id == run_id
        ]
        judge, human = [], []
        for row, choices in labelled:
            top = majority(choices)
            if row.judge and top and top != "both_bad":
                judge.append(row.judge.upper() if row.kind == "pairwise" else row.judge)
                human.append(top.upper() if row.kind == "pairwise" else top)
        query = select(func.count(func.distinct(col(ReviewLabel.reviewer)))).join(
            ReviewItem, col(ReviewItem.id) == col(ReviewLabel.item_id)
        )
        if run_id is not None:
            query = query.where(col(ReviewItem.run_id) == run_id)
        with self.db.connect() as conn:
            reviewers = int(conn.execute(query).scalar_one())
        return ReviewAgreement(
            items=len(labelled),
            labels=sum(len(c) for _, c in labelled),
            reviewers=reviewers,
            multiply_labelled=sum(1 for _, c in labelled if len(c) >= 2),
            alpha=krippendorff_alpha([c for _, c in labelled]),
            judge=agreement(judge, human).to_json() if judge else None,
        )

    def ranking(self, *, resamples: int = 200, seed: int = 0) -> Ranking:
        """A Bradley–Terry ranking of the models in pairwise items, from every label (a tie
        counts half to each; ``both_bad`` says nothing about which is better and is left out)."""
        outcome = {"A": 1.0, "B": 0.0, "tie": 0.5}
        comparisons = [
            Comparison(str(row.answers[0]["model"]), str(row.answers[1]["model"]), outcome[c])
            for row, choices in self._labelled()
            if row.kind == "pairwise"
            for c in choices
            if c in outcome
        ]
        return bradley_terry(comparisons, resamples=resamples, seed=seed)

    def apply(self, run_id: str) -> int:
        """Write the reviewers' majority onto eval run ``run_id`` as its cases' ``human``
        labels (``pass``/``fail`` on results, ``A``/``B``/``TIE`` on pairwise judgements), so
        that its judge calibration uses them; the number of cases labelled."""
        labels = {"A": "A", "B": "B", "tie": "TIE", "pass": "pass", "fail": "fail"}
        run_id = self._run(run_id).run_id  # `latest`, and a clear error for an unknown run
        changed = 0
        labelled = [(row, c) for row, c in self._labelled() if row.run_id == run_id]
        with self.db.write() as session:
            for row, choices in labelled:
                top = majority(choices)
                if top not in labels or row.case_index is None:
                    continue
                if row.kind == "pairwise":
                    target: Any = session.get(EvalPair, (run_id, row.case_index))
                else:
                    target = session.get(
                        EvalResult,
                        (
                            run_id,
                            row.case_index,
                            row.answers[0].get("target", row.answers[0]["model"]),
                        ),
                    )
                if target is None or target.human == labels[top]:
                    continue
                record_event(
                    session,
                    actor=self.actor,
                    action="review.apply",
                    entity_type="eval_run",
                    entity_key=run_id,
                    before={"case": row.case_index, "human": target.human},
                    after={"case": row.case_index, "human": labels[top]},
                )
                target.human = labels[top]
                changed += 1
        if changed:
            from llmops.evals.results import EvalRuns

            EvalRuns(self.db, actor=self.actor).recalibrate(run_id)
        return changed

    def preferences(self) -> Iterator[dict[str, Any]]:
        """DPO rows (``prompt``, ``chosen``, ``rejected``) from pairwise items whose reviewers'
        majority picked one answer; ``prompt`` is the item's messages (or its input text)."""
        for row, choices in self._labelled():
            top = majority(choices)
            if row.kind != "pairwise" or top not in ("A", "B"):
                continue
            if any("truncated" in a for a in row.answers):
                continue  # a cut answer is not the answer the model gave: no training data
            win, lose = (0, 1) if top == "A" else (1, 0)
            body = row.input
            prompt: Any = body.get("messages") or body.get("text") or body.get("vars") or {}
            yield {
                "prompt": prompt,
                "chosen": row.answers[win]["text"],
                "rejected": row.answers[lose]["text"],
                "item": row.id,
                "labels": len(choices),
            }


def _label_counts() -> Any:
    """A subquery of ``(item_id, n)``: how many labels each labelled item has."""
    return (
        select(col(ReviewLabel.item_id), func.count().label("n"))
        .group_by(col(ReviewLabel.item_id))
        .subquery()
    )
