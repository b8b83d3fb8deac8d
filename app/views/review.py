"""Human review: a queue of items, one at a time. Pairwise items show two answers to the same
input in an order randomized per item and reviewer; the reviewer picks the better one, a tie, or
both bad (keys 1, 2, 3, 4), with an optional comment. Below the queue: agreement between
reviewers and of the judge with them, a Bradley–Terry ranking of the compared models, and
exports (JSONL, DPO preference rows)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
import streamlit as st
from app_common import empty, num, pct, workspace

from llmops.errors import LLMOpsError

# Choices in the order shown (left answer, right answer) and their keys. (A comment, not a
# docstring: streamlit's magic would print a bare string on the page.)
PAIRWISE = (("A", "1"), ("B", "2"), ("tie", "3"), ("both_bad", "4"))


def _input(item: Any) -> None:
    # inputs come from end users and models: shown as text, never as Markdown
    body = item.input
    if body.get("messages"):
        for m in body["messages"]:
            st.text(f"{m.get('role', '?')}: {m.get('content', '')}")
    elif body.get("text"):
        st.text(str(body["text"]))
    else:
        st.json(body.get("vars") or body, expanded=True)


def _save(item: Any, choice: str, reviewer: str) -> None:
    ws = workspace()
    comment = st.session_state.get(f"comment_{item.item}", "")
    try:
        ws.reviews.add(item.item, choice, reviewer, comment=comment, shown=item.shown)  # type: ignore[arg-type]
    except LLMOpsError as exc:
        st.session_state["review_error"] = str(exc)
        return
    st.session_state["review_saved"] = f"Saved {choice} for {item.item}"


def _pairwise(item: Any, reviewer: str) -> None:
    order = [0, 1] if item.shown == "AB" else [1, 0]
    left, right = st.columns(2)
    for col, slot, title in ((left, order[0], "Answer 1"), (right, order[1], "Answer 2")):
        with col:
            st.markdown(f"**{title}**")
            st.code(item.answers[slot]["text"] or "(empty)", language=None, wrap_lines=True)
    st.text_input("Comment (optional)", key=f"comment_{item.item}")
    # shown labels refer to the screen; stored choices to the item's answers in stored order
    screen = {
        "A": "Answer 1 is better",
        "B": "Answer 2 is better",
        "tie": "Tie",
        "both_bad": "Both bad",
    }
    stored = {
        "A": "A" if item.shown == "AB" else "B",
        "B": "B" if item.shown == "AB" else "A",
        "tie": "tie",
        "both_bad": "both_bad",
    }
    cols = st.columns(4)
    for col, (choice, key) in zip(cols, PAIRWISE, strict=True):
        col.button(
            screen[choice],  # streamlit shows the shortcut key beside it
            key=f"pick_{choice}",
            shortcut=key,
            on_click=_save,
            args=(item, stored[choice], reviewer),
            width="stretch",
        )


def _single(item: Any, reviewer: str) -> None:
    st.text(f"Answer ({item.models[0]})")
    st.code(item.answers[0]["text"] or "(empty)", language=None, wrap_lines=True)
    st.text_input("Comment (optional)", key=f"comment_{item.item}")
    cols = st.columns(2)
    for col, (choice, key, title) in zip(
        cols, (("pass", "1", "Good"), ("fail", "2", "Bad")), strict=True
    ):
        col.button(
            title,
            key=f"pick_{choice}",
            shortcut=key,
            on_click=_save,
            args=(item, choice, reviewer),
            width="stretch",
        )


def _queue(reviewer: str) -> None:
    ws = workspace()
    try:
        queue = ws.reviews.queue(reviewer, limit=1)
    except LLMOpsError as exc:
        st.error(str(exc))
        return
    if "review_saved" in st.session_state:
        st.success(st.session_state.pop("review_saved"))
    if "review_error" in st.session_state:
        st.error(st.session_state.pop("review_error"))
    if not queue:
        st.success(f"Nothing left for {reviewer} to review.")
        return
    item = queue[0]
    st.subheader(f"{item.item} · {item.kind} · {item.labels} label(s) so far")
    st.caption(f"from {item.source} {item.run_id or ''}".strip())
    _input(item)
    if item.kind == "pairwise":
        _pairwise(item, reviewer)
    else:
        _single(item, reviewer)


def _sources() -> None:
    ws = workspace()
    with st.expander("Add items to the queue"):
        runs = [r.run_id for r in ws.eval_runs.list(limit=100)]
        cols = st.columns([3, 1])
        run = cols[0].selectbox(
            "From an eval run", runs, index=None, key="source_run", placeholder="choose a run"
        )
        if cols[1].button("Queue cases", disabled=run is None, key="queue_run") and run:
            st.toast(f"{ws.reviews.from_run(run)} new item(s) from {run}")
        logical = [p.logical for p in ws.serving.traffic.list()]
        cols = st.columns([3, 1])
        model = cols[0].selectbox(
            "From a logical model's shadow pairs",
            logical,
            index=None,
            key="source_shadow",
            placeholder="choose a model",
        )
        if cols[1].button("Queue pairs", disabled=model is None, key="queue_shadow") and model:
            st.toast(f"{ws.reviews.from_shadow(model)} new item(s) from {model}")


@st.cache_data(show_spinner="Counting ...", max_entries=8)
def _summary(version: tuple[Any, ...]) -> dict[str, Any]:
    """Agreement, ranking and exports for one state of the labels (a new label is a new
    state): computed once, not on every click."""
    ws = workspace()
    return {
        "agreement": ws.reviews.agreement().to_json(),
        "ranking": ws.reviews.ranking(),
        "labels": "".join(json.dumps(r, default=str) + "\n" for r in ws.reviews.export()),
        "dpo": "".join(json.dumps(r, default=str) + "\n" for r in ws.reviews.preferences()),
    }


def _numbers() -> None:
    ws = workspace()
    summary = _summary(ws.reviews.version())
    agreement = summary["agreement"]
    st.subheader("Agreement")
    cols = st.columns(4)
    cols[0].metric("Labels", agreement["labels"])
    cols[1].metric("Reviewers", agreement["reviewers"])
    cols[2].metric("Items with 2+ labels", agreement["multiply_labelled"])
    cols[3].metric(
        "Krippendorff's alpha",
        num(agreement["alpha"], ".2f"),
        help="Agreement among reviewers: 1 perfect, 0 chance",
    )
    judge = agreement["judge"]
    if judge:
        st.markdown(
            f"**Judge vs reviewers' majority**: agreement {pct(judge['agreement'])}, "
            f"Cohen's kappa {num(judge['kappa'], '.2f')} over {judge['n']} item(s)"
        )
        confusion = pd.DataFrame(judge["confusion"]).T
        confusion.index.name = "people \\ judge"
        st.dataframe(confusion, width="content")
    ranking = summary["ranking"]
    if ranking.models:
        st.subheader("Ranking (Bradley–Terry)")
        if ranking.groups > 1:
            st.warning(
                f"The labels link the models in {ranking.groups} separate groups: models of"
                " different groups never met, and their order says nothing."
            )
        st.dataframe(
            pd.DataFrame([{
                "rank": m.rank, "model": m.model, "strength": round(m.strength, 3),
                "95% interval": f"{m.low:.2f} – {m.high:.2f}", "wins": m.wins,
                "losses": m.losses, "ties": m.ties,
            } for m in ranking.models]),
            hide_index=True,
        )  # fmt: skip
        st.caption(f"from {ranking.comparisons} pairwise label(s); both_bad labels are left out")
    cols = st.columns(2)
    cols[0].download_button("Export labels (JSONL)", key="export_labels", data=summary["labels"],
                            file_name="review-labels.jsonl", mime="application/jsonl")  # fmt: skip
    cols[1].download_button("Export DPO pairs (JSONL)", key="export_dpo", data=summary["dpo"],
                            file_name="preferences.jsonl", mime="application/jsonl")  # fmt: skip


def render() -> None:
    """The page."""
    ws = workspace()
    st.title("Human review")
    reviewer = st.text_input("Reviewer", value=ws.actor, key="reviewer").strip()
    _sources()
    if not ws.reviews.items(limit=1):
        empty(
            "review items",
            "Queue an eval run's cases above, or run `llmops review add --run RUN_ID`.",
        )
        return
    if not reviewer:
        st.warning("Type your name to review.")
    else:
        _queue(reviewer)
    _numbers()


render()
