"""Training runs: status and final loss; the loss, learning-rate and eval-loss curves of one run
or several overlaid; a run's resolved recipe and environment."""

from __future__ import annotations

from typing import Any

import altair as alt
import pandas as pd
import streamlit as st
from app_common import FOREVER, empty, num, workspace


@st.cache_data(show_spinner=False, ttl=FOREVER, max_entries=128)
def _metrics(run_id: str, _version: tuple[Any, ...]) -> list[dict[str, Any]]:
    return workspace().runs.metrics(run_id)


def _curves(runs: list[Any]) -> None:
    rows = []
    for r in runs:
        for m in _metrics(r.run_id, (r.status, r.step, str(r.ended_at))):
            for key in ("loss", "learning_rate", "eval_loss"):
                if m.get(key) is not None:
                    rows.append(
                        {"run": r.run_id, "step": m["step"], "metric": key, "value": float(m[key])}
                    )
    if not rows:
        st.caption("No logged steps for these runs.")
        return
    data = pd.DataFrame(rows)
    for metric in ("loss", "eval_loss", "learning_rate"):
        part = data[data["metric"] == metric]
        if part.empty:
            continue
        chart = (
            alt.Chart(part, title=metric.replace("_", " "))
            .mark_line(point=len(part) < 60)
            .encode(x="step:Q", y=alt.Y("value:Q", title=metric), color="run:N")
            .properties(height=220)
        )
        st.altair_chart(chart, width="stretch")


def render() -> None:
    """The page."""
    ws = workspace()
    st.title("Training runs")
    runs = list(ws.runs.list(limit=200))
    if not runs:
        empty("training runs", "Train with `llmops train recipes/sft-lora.yaml`.")
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "run": r.run_id,
                    "recipe": r.recipe_name,
                    "status": r.status,
                    "steps": f"{r.step}/{r.max_steps}",
                    "final loss": num(r.final_loss, ".4f"),
                    "adapter": r.adapter_ref or "",
                    "base model": r.base_model,
                    "started": r.started_at,
                }
                for r in runs
            ]
        ),
        hide_index=True,
    )
    ids = [r.run_id for r in runs]
    chosen = st.multiselect("Runs to plot (overlaid)", ids, default=ids[:1], key="runs")
    picked = [r for r in runs if r.run_id in chosen]
    _curves(picked)
    if picked:
        run = picked[0]
        st.subheader(f"{run.run_id}: resolved recipe and environment")
        cols = st.columns(2)
        with cols[0]:
            st.json(run.recipe, expanded=False)
        with cols[1]:
            st.json(run.environment, expanded=False)


render()
