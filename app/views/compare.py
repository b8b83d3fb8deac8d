"""Compare (the home page): two eval runs, or two targets of one run, case by case.

Headline: the paired difference of scores with its 95% interval and p-value, wins/ties/losses,
and the verdict flips with McNemar's exact test. Below: score and latency distributions, and the
cases a page at a time, filtered, with both outputs side by side (or as a word diff), the
assertions and the judge's reasons. The URL (``?page=compare&a=RUN&b=RUN&case=ID``) opens the
same comparison and case for a colleague.
"""

from __future__ import annotations

import dataclasses
import html
from typing import Any

import altair as alt
import numpy as np
import pandas as pd
import streamlit as st
from app_common import FOREVER, empty, num, pct, plain, query, workspace

from llmops.errors import LLMOpsError
from llmops.evals.cases_compared import (
    CASE_STATUSES,
    CaseFilter,
    CasePage,
    Side,
    SideComparison,
    case_page,
    compare_sides,
    word_diff,
)

PAGE_SIZES = (25, 50, 100)


def _version(run: Any) -> tuple[Any, ...]:
    """What makes a cached read of a run stale: nothing, once it has ended."""
    return (run.status, run.cases, str(run.ended_at))


# A resource, not data: the comparison holds every case's verdict, and reruns share it instead
# of unpickling a copy each time.
@st.cache_resource(show_spinner="Comparing ...", ttl=FOREVER, max_entries=16)
def _compare(a: Side, b: Side, version: tuple[Any, ...]) -> SideComparison:
    return compare_sides(workspace().eval_runs, a, b)


@st.cache_data(show_spinner=False, ttl=FOREVER, max_entries=256)
def _page(
    _c: SideComparison, key: tuple[Any, ...], where: CaseFilter, offset: int, limit: int
) -> CasePage:
    return case_page(workspace().eval_runs, _c, where=where, offset=offset, limit=limit)


def _pick_side(label: str, runs: list[Any], run_id: str | None, target: str | None) -> Side:
    ids = [r.run_id for r in runs]
    index = ids.index(run_id) if run_id in ids else 0
    col_run, col_target = st.columns([3, 2])
    chosen = col_run.selectbox(
        f"Run {label}",
        ids,
        index=index,
        format_func=lambda i: (
            f"{i} · {runs[ids.index(i)].suite_name} · {runs[ids.index(i)].status}"
        ),
        key=f"run_{label}",
    )
    targets = runs[ids.index(chosen)].targets
    if target is not None and target not in targets and chosen == run_id:
        st.warning(f"Run {label} has no target {target!r} (from the link); showing "
                   f"{targets[0]!r}. Its targets: {', '.join(targets)}.")  # fmt: skip
    t_index = targets.index(target) if target in targets else 0
    picked = col_target.selectbox(f"Target {label}", targets, index=t_index, key=f"target_{label}")
    return Side(chosen, picked)


def _defaults(runs: list[Any]) -> tuple[str, str | None, str, str | None]:
    """Sides from the URL; else the newest run against the newest earlier run of its suite;
    else its first two targets; else the run before it."""
    a, b = query("a"), query("b")
    ta, tb = query("ta"), query("tb")
    if a and b:
        return a, ta, b, tb
    newest = runs[0]
    same_suite = [r for r in runs[1:] if r.suite_name == newest.suite_name]
    if same_suite:
        return same_suite[0].run_id, ta, newest.run_id, tb
    if len(newest.targets) > 1:
        return newest.run_id, ta or newest.targets[0], newest.run_id, tb or newest.targets[1]
    earlier = runs[1] if len(runs) > 1 else newest
    return earlier.run_id, ta, newest.run_id, tb


def _headline(c: SideComparison) -> None:
    p = c.paired
    st.subheader(f"B − A: {p.verdict()}")
    m = st.columns(3) + st.columns(3)  # two rows: the interval and pass rates need the width
    m[0].metric(
        "Score difference (B − A)",
        num(p.diff.mean, "+.3f"),
        help="Mean of B's score minus A's over the cases both graded",
    )
    m[3].metric("95% interval", f"{num(p.diff.low, '+.3f')} to {num(p.diff.high, '+.3f')}")
    m[1].metric(
        "p-value",
        num(max(p.p_bootstrap, p.p_sign), ".3g"),
        help="The larger of the paired bootstrap and the exact sign test",
    )
    m[4].metric("Pass rate A → B", f"{pct(c.pass_rate_a)} → {pct(c.pass_rate_b)}")
    m[5].metric("Flips (pass→fail / fail→pass)",
                f"{c.flips['pass_to_fail']} / {c.flips['fail_to_pass']}")  # fmt: skip
    m[2].metric("B wins / ties / losses", f"{p.wins} / {p.ties} / {p.losses}")
    left, right = st.columns([2, 3])
    with left:
        st.markdown("**Verdict flips** (cases both graded)")
        st.dataframe(
            pd.DataFrame(
                {
                    "B passed": [c.flips["pass_to_pass"], c.flips["fail_to_pass"]],
                    "B failed": [c.flips["pass_to_fail"], c.flips["fail_to_fail"]],
                },
                index=["A passed", "A failed"],
            ),
        )
        st.caption(
            f"pass→fail {c.flips['pass_to_fail']}, fail→pass {c.flips['fail_to_pass']}; "
            f"exact McNemar p = {num(c.p_mcnemar, '.3g')}"
        )
    with right:
        # binned here: the browser gets 2 x 20 bars, not every case's score
        chart = (
            alt.Chart(_histogram(c.scores_a, c.scores_b), title="Score distribution")
            .mark_bar(opacity=0.6)
            .encode(
                x=alt.X("low:Q", title="score", bin="binned"),
                x2="high:Q",
                y=alt.Y("cases:Q", stack=None, title="cases"),
                color=alt.Color("side:N"),
                xOffset="side:N",
            )
            .properties(height=220)
        )
        st.altair_chart(chart, width="stretch")


def _histogram(a: list[float], b: list[float], bins: int = 20) -> pd.DataFrame:
    """Counts of each side's scores in BINS equal bins over their common range."""
    low = min(min(a, default=0.0), min(b, default=0.0))
    high = max(max(a, default=1.0), max(b, default=1.0))
    edges = np.linspace(low, high if high > low else low + 1.0, bins + 1)
    frames = [
        pd.DataFrame({"low": edges[:-1], "high": edges[1:],
                      "cases": np.histogram(scores, bins=edges)[0], "side": side})
        for side, scores in (("A", a), ("B", b))
    ]  # fmt: skip
    return pd.concat(frames, ignore_index=True)


def _filters(c: SideComparison) -> CaseFilter:
    cols = st.columns([2, 2, 2, 2, 3])
    regressions = cols[0].toggle("Regressions only", key="regressions")
    statuses = cols[0].multiselect("Status", CASE_STATUSES, key="statuses", disabled=regressions)
    assertion = cols[1].selectbox("Failed assertion", ["any", *c.assertion_types], key="assertion")
    var = _pair(cols[2].text_input("Variable (NAME=VALUE)", key="var"), "variable")
    meta = _pair(cols[3].text_input("Tag or metadata (KEY=VALUE)", key="meta"), "metadata")
    text = cols[4].text_input("Search inputs and outputs", key="search").strip()
    return CaseFilter(
        status=("regressed",) if regressions else tuple(statuses),
        assertion=None if assertion == "any" else assertion,
        text=text or None,
        var=var,
        metadata=meta,
    )


def _pair(text: str, what: str) -> tuple[str, str] | None:
    """A NAME=VALUE filter, or None (with a warning when it is malformed)."""
    if not text.strip():
        return None
    try:
        return CaseFilter.parse_var(text.strip(), what=what)
    except ValueError as exc:
        st.warning(str(exc))
        return None


def _diff_html(a: str, b: str) -> str:
    parts = []
    for kind, text in word_diff(a, b):
        t = html.escape(text)
        if kind == "removed":
            parts.append(f"<del style='background:#fdd'>{t}</del>")
        elif kind == "added":
            parts.append(f"<ins style='background:#dfd'>{t}</ins>")
        else:
            parts.append(t)
    return "<div style='white-space:pre-wrap;font-family:monospace'>" + "".join(parts) + "</div>"


def _side_detail(title: str, r: dict[str, Any]) -> None:
    verdict = "error" if r["passed"] is None else ("pass" if r["passed"] else "fail")
    # model outputs, reasons and names are untrusted: shown as text, never as Markdown
    st.text(
        f"{title} · {verdict} · score {num(r['score'])} · "
        f"{num(r['latency_ms'], '.0f')} ms · ${num(r['cost'], '.5f')}"
    )
    st.code(r["output"] or "(empty)", language=None, wrap_lines=True)
    if r["error"]:
        st.code(r["error"], language=None, wrap_lines=True)
    if r["assertions"]:
        st.dataframe(
            pd.DataFrame([{
                "assertion": str(a.get("type")), "passed": bool(a.get("passed")),
                "score": a.get("score"), "reason": str(a.get("reason") or ""),
            } for a in r["assertions"]]),
            hide_index=True,
        )  # fmt: skip


def _case(row: dict[str, Any], c: SideComparison) -> None:
    """One case in full: its variables, both sides (or their word diff), assertions and reasons.
    One at a time: a page of 25 open cases is hundreds of elements for the browser to draw."""
    st.markdown(f"**case {plain(row['case'])} · {row['status']}**")
    st.json(row["vars"], expanded=False)
    if row["metadata"]:
        st.text("metadata: " + ", ".join(f"{k}={v}" for k, v in row["metadata"].items()))
    mode = st.radio(
        "View", ["side by side", "word diff"], horizontal=True, key=f"mode_{row['key']}"
    )
    if mode == "word diff":
        st.html(_diff_html(row["a"]["output"], row["b"]["output"]))
        return
    left, right = st.columns(2)
    with left:
        _side_detail(f"A {c.a}", row["a"])
    with right:
        _side_detail(f"B {c.b}", row["b"])


def _cases(c: SideComparison, version: tuple[Any, ...]) -> None:
    st.subheader("Cases")
    where = _filters(c)
    picker = f"case_pick_{hash(where)}"  # a new filter or page: its first case in full
    size = st.session_state.get("page_size", PAGE_SIZES[0])
    asked = max(1, int(st.session_state.get("page_no", 1)))
    key = (c.a, c.b, version)
    wanted = query("case")
    if wanted and "page_no" not in st.session_state:  # a link to a case: open its page
        where = dataclasses.replace(where, case=wanted)
    page = _page(c, key, where, (asked - 1) * size, size)
    asked = page.offset // size + 1
    pages = max(1, -(-page.total // size))
    if asked > pages:  # the filter shrank the matches below the page asked for
        asked = st.session_state["page_no"] = pages
        page = _page(c, key, where, (asked - 1) * size, size)
    nav = st.columns([1, 1, 4])
    st.session_state["page_no"] = asked
    nav[0].number_input("Page", min_value=1, max_value=pages, key="page_no")
    nav[1].selectbox("Per page", PAGE_SIZES, key="page_size")
    nav[2].caption(f"{page.total} case(s) match; page {asked} of {pages}")
    if not page.rows:
        st.info("No case matches these filters.")
        return
    table = pd.DataFrame(
        [
            {
                "case": str(r["case"]),
                "status": r["status"],
                "A": "error"
                if r["a"]["passed"] is None
                else ("pass" if r["a"]["passed"] else "fail"),
                "B": "error"
                if r["b"]["passed"] is None
                else ("pass" if r["b"]["passed"] else "fail"),
                "score A": r["a"]["score"],
                "score B": r["b"]["score"],
                "latency A ms": r["a"]["latency_ms"],
                "latency B ms": r["b"]["latency_ms"],
                "output B": (r["b"]["output"] or "")[:120],
            }
            for r in page.rows
        ]
    )
    st.dataframe(table, hide_index=True)
    names = [str(r["case"]) for r in page.rows]
    shown = st.selectbox(
        "Case in full",
        range(len(names)),
        index=names.index(wanted) if wanted in names else 0,
        format_func=lambda i: f"case {names[i]} · {page.rows[i]['status']}",
        key=f"{picker}_{page.offset}",
    )
    st.query_params["case"] = names[shown]  # the link opens this case for a colleague
    _case(page.rows[shown], c)


def render() -> None:
    """The page."""
    ws = workspace()
    st.title("Compare eval runs")
    runs = list(ws.eval_runs.list(limit=200))
    if not runs:
        empty("eval runs", "Run a suite with `llmops eval run evals/<suite>.yaml`.")
        return
    a_run, a_target, b_run, b_target = _defaults(runs)
    known = {r.run_id for r in runs}
    for wanted in (a_run, b_run):
        if wanted not in known:
            try:
                runs.append(ws.eval_runs.get(wanted))
            except LLMOpsError as exc:
                st.error(f"Run {wanted!r} from the link: {exc}")
                return
            known.add(wanted)
    a = _pick_side("A", runs, a_run, a_target)
    b = _pick_side("B", runs, b_run, b_target)
    st.query_params.update(
        {"page": "compare", "a": a.run_id, "b": b.run_id, "ta": a.target, "tb": b.target}
    )
    by_id = {r.run_id: r for r in runs}
    version = (_version(by_id[a.run_id]), _version(by_id[b.run_id]))
    st.caption(f"A = {a.run_id} ({a.target}) · B = {b.run_id} ({b.target})")
    c = _compare(a, b, version)
    for warning in c.warnings:
        st.warning(f"Not like for like: {warning}")
    if c.paired.n == 0:
        st.info("The two sides have no graded case in common: nothing to compare.")
        return
    _headline(c)
    _cases(c, version)


render()
