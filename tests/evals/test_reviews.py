"""Human review: items from runs and shadow pairs, the queue, labels, agreement, rankings,
labels written back to a run, and exports."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from sqlalchemy import select

from llmops import Workspace
from llmops.db.models import AuditEvent, ShadowPair
from llmops.errors import EvalRunNotFoundError, InputError, NotFoundError
from llmops.evals.reviews import shown_order
from llmops.evals.testing import record_run


def _pair_run(ws: Workspace, n: int = 8) -> str:
    rows: list[dict[str, Any]] = []
    for i in range(n):
        rows.append(
            {
                "case_index": i,
                "target": "base",
                "vars": {"q": f"q{i}"},
                "output": f"base {i}",
                "passed": i % 2 == 0,
                "score": float(i % 2 == 0),
            }
        )
        rows.append({"case_index": i, "target": "tuned", "vars": {"q": f"q{i}"},
                     "output": f"tuned {i}", "passed": True, "score": 1.0})  # fmt: skip
    pairs = [{"case_index": i, "verdict": "B" if i % 2 else "TIE"} for i in range(n)]
    return record_run(ws.eval_runs, rows, targets=("base", "tuned"), pairs=pairs).run_id


def test_items_from_a_pairwise_run_are_added_once(ws: Workspace) -> None:
    run = _pair_run(ws)
    assert ws.reviews.from_run(run) == 8
    assert ws.reviews.from_run(run) == 0  # idempotent
    assert ws.reviews.from_run("latest") == 0  # the newest run: the same one
    items = ws.reviews.items(run_id=run)
    assert len(items) == 8 and {i.kind for i in items} == {"pairwise"}
    first = items[0]
    assert first.source == "eval_pair" and first.models == ["base", "tuned"]
    assert first.answers[1]["text"] == "tuned 0" and first.input == {"vars": {"q": "q0"}}
    assert first.judge == "TIE"
    with pytest.raises(EvalRunNotFoundError, match="no eval run 'eval-nope'"):
        ws.reviews.from_run("eval-nope")


def test_single_target_runs_give_single_items_labelled_pass_or_fail(ws: Workspace) -> None:
    rows = [{"case_index": i, "target": "m", "output": f"o{i}", "passed": i == 0} for i in range(3)]
    run = record_run(ws.eval_runs, rows, targets=("m",)).run_id
    assert ws.reviews.from_run(run) == 3
    item = ws.reviews.items(run_id=run)[0]
    assert item.kind == "single" and item.judge == "pass"
    with pytest.raises(InputError, match=r"does not fit single item .*: use one of pass, fail"):
        ws.reviews.add(item.item, "A", "alice")
    assert ws.reviews.add(item.item, "fail", "alice").choice == "fail"


def test_queue_spreads_reviewers_and_keeps_each_ones_order_stable(ws: Workspace) -> None:
    ws.reviews.from_run(_pair_run(ws, n=6))
    alice = ws.reviews.queue("alice", limit=10)
    assert len(alice) == 6
    assert [i.shown for i in alice] == [shown_order(i.item, "alice") for i in alice]
    assert {i.shown for i in alice} <= {"AB", "BA"}
    # both orders occur over many items and reviewers (randomized, not fixed)
    assert {shown_order(f"rev-{n:012x}", "r") for n in range(32)} == {"AB", "BA"}
    ws.reviews.add(alice[0].item, "A", "alice")
    again = ws.reviews.queue("alice", limit=10)
    assert alice[0].item not in [i.item for i in again] and len(again) == 5
    bob = ws.reviews.queue("bob", limit=10)
    assert bob[-1].item == alice[0].item  # the labelled item goes to the back of bob's queue
    with pytest.raises(InputError, match="must be a name of 1 to 256 printable characters"):
        ws.reviews.queue("  ")


def test_relabelling_replaces_and_every_change_is_audited(ws: Workspace) -> None:
    item = ws.reviews.add_pair("Which is better?", "yes", "no", models=("m1", "m2"), key="k1")
    assert ws.reviews.add_pair("again", "x", "y", models=("m1", "m2"), key="k1").item == item.item
    ws.reviews.add(item.item, "A", "alice", comment="clearer", shown="BA")
    ws.reviews.add(item.item, "both_bad", "alice")
    labels = ws.reviews.labels(item=item.item)
    assert [(x.choice, x.reviewer) for x in labels] == [("both_bad", "alice")]
    with ws.db.read() as session:
        events = session.scalars(
            select(AuditEvent).where(AuditEvent.action == "review.label")
        ).all()
    assert [e.after["choice"] for e in events] == ["A", "both_bad"]
    assert events[1].before == {"choice": "A", "comment": "clearer"}
    with pytest.raises(NotFoundError, match="review item 'rev-missing' does not exist"):
        ws.reviews.add("rev-missing", "A", "alice")
    with pytest.raises(InputError, match="choice 'C' does not fit pairwise item"):
        ws.reviews.add(item.item, "C", "alice")
    with pytest.raises(ValueError, match="different model names"):
        ws.reviews.add_pair("q", "a", "b", models=("same", "same"))


def test_agreement_ranking_and_labels_written_back_to_the_run(ws: Workspace) -> None:
    run = _pair_run(ws)
    ws.reviews.from_run(run)
    items = ws.reviews.items(run_id=run)
    for it in items:
        odd = it.case_index % 2 == 1
        ws.reviews.add(it.item, "B" if odd else "tie", "alice")
        ws.reviews.add(it.item, "B" if odd else "A", "bob")
    found = ws.reviews.agreement()
    assert (found.items, found.labels, found.reviewers, found.multiply_labelled) == (8, 16, 2, 8)
    assert -1 <= found.alpha < 1
    # the judge said B on odd cases (the majority agrees) and TIE on even ones (no majority)
    assert found.judge is not None and found.judge["n"] == 4 and found.judge["agreement"] == 1.0
    ranking = ws.reviews.ranking(resamples=50)
    assert [m.model for m in ranking.models] == ["tuned", "base"]
    assert ranking.models[0].wins == 8 and ranking.comparisons == 16
    assert ws.reviews.apply(run) == 4  # odd cases: a B majority
    assert ws.reviews.apply(run) == 0
    pairs = {p["case_index"]: p["human"] for p in ws.eval_runs.pairs(run)}
    assert pairs[1] == "B" and pairs[0] is None
    calibration = ws.eval_runs.get(run).summary["calibration"]["pairwise"]
    assert calibration["n"] == 4 and calibration["agreement"] == 1.0
    dpo = list(ws.reviews.preferences())
    assert (
        len(dpo) == 4
        and dpo[0]["chosen"].startswith("tuned")
        and dpo[0]["rejected"].startswith("base")
    )
    other = ws.reviews.add_pair("elsewhere", "x", "y", models=("m1", "m2"))
    ws.reviews.add(other.item, "A", "zed")
    assert ws.reviews.agreement().reviewers == 3
    assert ws.reviews.agreement(run_id=run).reviewers == 2  # only those who labelled the run


def test_export_round_trips_a_pairwise_label(ws: Workspace) -> None:
    item = ws.reviews.add_pair({"messages": [{"role": "user", "content": "hi"}]}, "a", "b",
                               models=("x", "y"))  # fmt: skip
    ws.reviews.add(item.item, "tie", "carol", comment="both fine")
    (row,) = list(ws.reviews.export())
    assert (row["item"], row["choice"], row["reviewer"]) == (item.item, "tie", "carol")
    assert row["answers"][0] == {"model": "x", "text": "a"} and row["format_version"] == 1
    assert row["comment"] == "both fine" and row["kind"] == "pairwise"


def test_items_from_shadow_pairs_put_the_stable_arm_first(ws: Workspace) -> None:
    with ws.db.write() as session:
        for i, verdict in enumerate(["candidate", "stable", None]):
            session.add(ShadowPair(
                response_id=f"r{i}", logical="bot", stable_model="m@1", candidate_model="m@2",
                messages=[{"role": "user", "content": f"hello {i}"}], stable_answer=f"old {i}",
                candidate_answer=f"new {i}", stable_latency_ms=5.0, verdict=verdict,
            ))  # fmt: skip
        session.add(ShadowPair(
            response_id="r9", logical="bot", stable_model="m@1", candidate_model="m@2",
            messages=[], stable_answer="x", candidate_answer=None, candidate_error="timeout",
            stable_latency_ms=5.0,
        ))  # fmt: skip
    assert ws.reviews.from_shadow("bot") == 3  # the failed mirror has nothing to compare
    items = sorted(ws.reviews.items(source="shadow_pair"), key=lambda i: i.source_key)
    assert [i.judge for i in items] == ["B", "A", None]
    assert items[0].models == ["m@1", "m@2"] and items[0].answers[1]["text"] == "new 0"


def test_concurrent_labels_of_one_item_by_one_reviewer_leave_one_label(ws: Workspace) -> None:
    item = ws.reviews.add_pair("q", "a", "b", models=("x", "y"))
    errors: list[BaseException] = []

    def label(choice: str) -> None:
        try:
            ws.reviews.add(item.item, choice, "dave")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=label, args=("A" if n % 2 else "B",)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ws.reviews.labels(item=item.item)) == 1


def test_limits_count_new_items_so_adding_again_goes_on(ws: Workspace) -> None:
    run = _pair_run(ws, n=8)
    assert [ws.reviews.from_run(run, limit=3) for _ in range(4)] == [3, 3, 2, 0]
    with ws.db.write() as session:
        for i in range(6):
            session.add(ShadowPair(
                response_id=f"s{i}", logical="bot", stable_model="m@1",
                candidate_model="m@1" if i % 2 else "m@2", messages=[], stable_answer="x",
                candidate_answer="y", stable_latency_ms=1.0,
            ))  # fmt: skip
    assert [ws.reviews.from_shadow("bot", limit=2) for _ in range(3)] == [2, 1, 0]


def test_errored_cases_are_not_queued_and_cut_answers_never_train(ws: Workspace) -> None:
    rows = [
        {"case_index": 0, "target": "m", "output": "", "passed": None, "error": "timeout"},
        {"case_index": 1, "target": "m", "output": "fine", "passed": True},
    ]
    run = record_run(ws.eval_runs, rows, targets=("m",)).run_id
    assert ws.reviews.from_run(run) == 1
    long = ws.reviews.add_pair("q", "x" * 150_000, "short", models=("a", "b"))
    assert long.answers[0]["truncated"] == 150_000 and len(long.answers[0]["text"]) == 100_000
    ws.reviews.add(long.item, "A", "alice")
    assert list(ws.reviews.preferences()) == []
    with pytest.raises(ValueError, match="different model names"):
        ws.reviews.add_pair("q", "a", "b", models=(1, "1"))  # type: ignore[arg-type]


def test_apply_reads_latest_and_refuses_unknown_runs(ws: Workspace) -> None:
    rows = [{"case_index": i, "target": "m", "output": f"o{i}", "passed": True} for i in range(2)]
    run = record_run(ws.eval_runs, rows, targets=("m",)).run_id
    ws.reviews.from_run("latest")
    for item in ws.reviews.items(run_id=run):
        ws.reviews.add(item.item, "fail", "alice")
    assert ws.reviews.apply("latest") == 2
    with pytest.raises(EvalRunNotFoundError):
        ws.reviews.apply("eval-doesnotexist")


@pytest.mark.parametrize("name", ["alice\u200b", "bob\u202e", "del\x7f", "x\x85y", "\ud800"])
def test_invisible_or_control_characters_are_refused_in_reviewer_names(
    ws: Workspace, name: str
) -> None:
    item = ws.reviews.add_pair("q", "a", "b", models=("x", "y"))
    with pytest.raises(InputError, match="printable characters"):
        ws.reviews.add(item.item, "A", name)


def test_secrets_pasted_into_comments_are_not_kept(ws: Workspace) -> None:
    item = ws.reviews.add_pair("q", "a", "b", models=("x", "y"))
    key = "sk-proj-" + "a1B2c3D4e5F6g7H8i9J0" * 2
    saved = ws.reviews.add(item.item, "A", "alice", comment=f"works with {key}")
    assert key not in saved.comment and key not in str(list(ws.reviews.export()))
    with pytest.raises(InputError, match="not valid text"):
        ws.reviews.add(item.item, "A", "alice", comment="bad \ud800")
    before = ws.reviews.version()
    ws.reviews.add(item.item, "B", "alice")
    assert ws.reviews.version() != before
