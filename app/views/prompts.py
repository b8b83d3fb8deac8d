"""Prompts: every prompt's versions with their labels, the diff between any two versions, and
the label history."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from app_common import FOREVER, empty, query, workspace


@st.cache_data(show_spinner=False, ttl=FOREVER, max_entries=128)
def _diff(a: str, b: str) -> str:
    return workspace().prompts.diff(a, b).text


def render() -> None:
    """The page."""
    ws = workspace()
    st.title("Prompts")
    prompts = list(ws.prompts.list())
    if not prompts:
        empty("prompts", "Push the workspace's prompt files with `llmops prompts push`.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "prompt": p.name,
                    "latest": p.latest_version,
                    "labels": ", ".join(f"{k}→{v}" for k, v in sorted(p.labels.items())),
                    "created": p.created_at,
                }
                for p in prompts
            ]
        ),
        hide_index=True,
    )
    names = [p.name for p in prompts]
    wanted = query("prompt")
    name = st.selectbox(
        "Prompt", names, index=names.index(wanted) if wanted in names else 0, key="prompt"
    )
    st.query_params.update({"page": "prompts", "prompt": name})
    versions = ws.prompts.versions(name)
    st.subheader("Versions")
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "version": v.version,
                    "labels": ", ".join(sorted(v.labels)),
                    "message": v.message,
                    "digest": v.digest[:19],
                    "by": v.author,
                    "created": v.created_at,
                    "archived": v.archived,
                }
                for v in versions
            ]
        ),
        hide_index=True,
    )
    numbers = sorted((v.version for v in versions), reverse=True)
    if len(numbers) >= 2:
        st.subheader("Diff")
        cols = st.columns(2)
        a = cols[0].selectbox("From", numbers, index=1 if len(numbers) > 1 else 0, key="diff_a")
        b = cols[1].selectbox("To", numbers, index=0, key="diff_b")
        st.code(_diff(f"{name}@{a}", f"{name}@{b}") or "(no difference)", language="diff")
    st.subheader("Label history")
    history = ws.prompts.history(name)
    st.dataframe(pd.DataFrame([h.to_json() for h in history]), hide_index=True)


render()
