"""Two sides compared case by case: flips with McNemar, filters, pages, word diffs."""

from __future__ import annotations

from typing import Any

import pytest

from llmops import Workspace
from llmops.evals.cases_compared import CaseFilter, Side, case_page, compare_sides, word_diff
from llmops.evals.testing import record_run


def _case(i: int, passed: bool | None, *, target: str = "model", text: str = "") -> dict[str, Any]:
    return {
        "case_index": i, "target": target, "case_id": f"c{i}",
        "vars": {"country": f"land{i}", "topic": "geo" if i % 2 else "math"},
        "metadata": {"tags": ["hard"] if i % 4 == 0 else ["easy"], "level": i % 3},
        "output": text or f"answer {i} {'right' if passed else 'wrong'}",
        "passed": passed, "score": None if passed is None else float(passed),
        "error": "boom" if passed is None else None,
        "assertions": [{"type": "icontains" if i % 2 else "equals", "passed": bool(passed),
                        "score": float(bool(passed)), "reason": "judged"}],
        "latency_ms": 10.0 + i, "cost": 0.001,
    }  # fmt: skip


@pytest.fixture
def runs(ws: Workspace) -> tuple[str, str]:
    # A: cases 0-19 pass except 0-4; B: 5 regress (5-9 fail), 3 fixed (0-2 pass), case 19 errors
    a = [_case(i, i >= 5) for i in range(20)]
    b = [_case(i, (i < 3) or (i >= 10)) for i in range(19)] + [_case(19, None)]
    ra = record_run(ws.eval_runs, a, suite_name="s")
    rb = record_run(ws.eval_runs, b, suite_name="s")
    return ra.run_id, rb.run_id


def test_flips_and_mcnemar_over_the_cases_both_graded(ws: Workspace, runs: tuple[str, str]) -> None:
    a, b = (Side(r, "model") for r in runs)
    c = compare_sides(ws.eval_runs, a, b)
    assert c.flips == {"pass_to_fail": 5, "fail_to_pass": 3, "pass_to_pass": 9, "fail_to_fail": 2}
    assert c.counts["errored"] == 1 and c.paired.n == 19
    assert c.p_mcnemar == pytest.approx(0.7265625)  # exact binomial, 8 discordant cases
    assert c.paired.wins == 3 and c.paired.losses == 5
    assert c.pass_rate_a == pytest.approx(14 / 19) and c.pass_rate_b == pytest.approx(12 / 19)
    assert c.warnings == [] and c.assertion_types == ["equals", "icontains"]
    # run-level comparison carries the same flips
    target = ws.eval_runs.compare(*runs)["targets"][0]
    assert (target["pass_to_fail"], target["fail_to_pass"]) == (5, 3)


def test_filters_narrow_and_pages_cover_every_match_once(
    ws: Workspace, runs: tuple[str, str]
) -> None:
    c = compare_sides(ws.eval_runs, *(Side(r, "model") for r in runs))
    regressed = case_page(ws.eval_runs, c, where=CaseFilter(status=("regressed",)))
    assert regressed.total == 5 and [r["case"] for r in regressed.rows] == [
        f"c{i}" for i in range(5, 10)
    ]
    assert all(r["a"]["passed"] and not r["b"]["passed"] for r in regressed.rows)
    failed_equals = case_page(ws.eval_runs, c, where=CaseFilter(assertion="equals"))
    assert {r["case"] for r in failed_equals.rows} == {"c0", "c2", "c4", "c6", "c8"}
    geo = case_page(ws.eval_runs, c, where=CaseFilter(var=("topic", "geo"), status=("fixed",)))
    assert [r["case"] for r in geo.rows] == ["c1"]
    hard = case_page(ws.eval_runs, c, where=CaseFilter(metadata=("tags", "hard")))
    assert [r["case"] for r in hard.rows] == ["c0", "c4", "c8", "c12", "c16"]
    assert hard.rows[0]["metadata"] == {"tags": ["hard"], "level": 0}
    level = CaseFilter(metadata=CaseFilter.parse_var("level=2", what="metadata"))
    assert [r["case"] for r in case_page(ws.eval_runs, c, where=level).rows] == [
        f"c{i}" for i in range(2, 20, 3)
    ]
    assert case_page(ws.eval_runs, c, where=CaseFilter(metadata=("nope", "x"))).total == 0
    found = case_page(ws.eval_runs, c, where=CaseFilter(text="LAND13"))
    assert [r["case"] for r in found.rows] == ["c13"]
    assert case_page(ws.eval_runs, c, where=CaseFilter(text="100%_")).total == 0  # escaped
    seen = []
    for offset in range(0, 20, 6):
        page = case_page(ws.eval_runs, c, offset=offset, limit=6)
        assert page.total == 20 and len(page.rows) <= 6
        seen += [r["case"] for r in page.rows]
    assert seen == [f"c{i}" for i in range(20)]
    row = case_page(ws.eval_runs, c, where=CaseFilter(status=("errored",))).rows[0]
    assert row["b"]["error"] == "boom" and row["a"]["assertions"][0]["reason"] == "judged"
    with pytest.raises(ValueError, match="limit 1 to 500"):
        case_page(ws.eval_runs, c, limit=501)


def test_two_targets_of_one_run_and_unknown_targets(ws: Workspace) -> None:
    rows = [_case(i, True, target="base") for i in range(6)]
    rows += [_case(i, i % 3 != 0, target="tuned") for i in range(6)]
    run = record_run(ws.eval_runs, rows, targets=("base", "tuned")).run_id
    c = compare_sides(ws.eval_runs, Side(run, "base"), Side(run, "tuned"))
    assert c.flips["pass_to_fail"] == 2 and c.warnings == []
    with pytest.raises(ValueError, match="has no target 'nope': it has base, tuned"):
        compare_sides(ws.eval_runs, Side(run, "base"), Side(run, "nope"))


def test_runs_that_are_not_like_for_like_are_warned_about(ws: Workspace) -> None:
    a = record_run(ws.eval_runs, [_case(i, True) for i in range(4)], suite_digest="sha256:aa")
    b = record_run(ws.eval_runs, [_case(i, True) for i in range(2, 6)], suite_digest="sha256:bb")
    c = compare_sides(ws.eval_runs, Side(a.run_id, "model"), Side(b.run_id, "model"))
    text = "\n".join(c.warnings)
    assert "different suites" in text and "2 case(s) ran only in" in text
    assert (c.only_a, c.only_b, c.paired.n) == (2, 2, 2)


@pytest.mark.parametrize(
    ("a", "b"),
    [("the cat sat", "the dog sat"), ("", "new words"), ("same\ntext", "same\ntext"),
     ("a  b\tc", "a b c d"), ("x", "")],
)  # fmt: skip
def test_word_diff_rebuilds_both_texts(a: str, b: str) -> None:
    runs = word_diff(a, b)
    assert "".join(t for k, t in runs if k != "added") == a
    assert "".join(t for k, t in runs if k != "removed") == b
    if a == b:
        assert all(k == "same" for k, _ in runs)


def test_word_diff_marks_the_changed_word() -> None:
    assert word_diff("the cat sat", "the dog sat") == [
        ("same", "the "), ("removed", "cat"), ("added", "dog"), ("same", " sat"),
    ]  # fmt: skip


def test_long_texts_diff_by_lines_and_huge_ones_whole() -> None:
    from llmops.evals.cases_compared import MAX_DIFF_TOKENS

    words = " ".join(f"w{i % 50}" for i in range(MAX_DIFF_TOKENS))
    a, b = words + "\nsame tail\n", words.replace("w7 ", "w8 ") + "\nsame tail\n"
    runs = word_diff(a, b)
    assert ("same", "same tail\n") in runs  # compared line by line
    assert "".join(t for k, t in runs if k != "added") == a
    many = "\n".join(f"line {i}" for i in range(MAX_DIFF_TOKENS + 1))
    assert word_diff(many, many + "!") == [("removed", many), ("added", many + "!")]


def test_text_search_folds_unicode_and_reads_values_not_json(ws: Workspace) -> None:
    rows = [
        {**_case(0, True), "output": "École only here", "vars": {"city": "café"}},
        {**_case(1, True), "output": "plain", "vars": {"city": "Paris"}},
    ]
    a = record_run(ws.eval_runs, rows).run_id
    b = record_run(ws.eval_runs, rows).run_id
    c = compare_sides(ws.eval_runs, Side(a, "model"), Side(b, "model"))

    def found(text: str) -> list[object]:
        return [r["case"] for r in case_page(ws.eval_runs, c, where=CaseFilter(text=text)).rows]

    assert found("école") == ["c0"] and found("CAFÉ") == ["c0"]
    assert found("city") == [] and found('"') == [] and found("\\") == []


def test_a_linked_case_opens_on_its_page(ws: Workspace, runs: tuple[str, str]) -> None:
    c = compare_sides(ws.eval_runs, *(Side(r, "model") for r in runs))
    page = case_page(ws.eval_runs, c, where=CaseFilter(case="c13"), limit=5)
    assert page.offset == 10 and "c13" in [r["case"] for r in page.rows]
    assert case_page(ws.eval_runs, c, where=CaseFilter(case="nope"), limit=5).offset == 0
