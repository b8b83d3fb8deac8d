"""Deployments and canaries: every logical model with its split, per-arm numbers, and the live
canary's step, analysis and decisions, refreshing by itself every few seconds."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from app_common import LIVE_TTL, empty, num, pct, workspace

from llmops.errors import NotFoundError


def _arms(arms: dict[str, Any]) -> None:
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "arm": name,
                    "requests": a.requests,
                    "errors": a.errors,
                    "error rate": pct(a.error_rate),
                    "p50 ms": num(a.p50_ms, ".1f"),
                    "p95 ms": num(a.p95_ms, ".1f"),
                    "feedback": a.feedback,
                    "feedback mean": num(a.feedback_mean, ".2f"),
                    "models": ", ".join(a.models),
                }
                for name, a in arms.items()
            ]
        ),
        hide_index=True,
    )


def _canary(logical: str) -> None:
    ws = workspace()
    try:
        c = ws.serving.canaries.status(logical)
    except NotFoundError:  # no canary for this model
        return
    st.markdown(
        f"**Canary** {c.candidate} vs {c.stable}: **{c.state}**, step {c.step + 1} of "
        f"{len(c.steps)} ({c.weight:g}% to the candidate) · {c.reason}"
    )
    progress = (c.step + 1) / max(len(c.steps), 1)
    st.progress(min(progress, 1.0))
    _arms(c.arms)
    analysis = c.analysis or {}
    if analysis:
        with st.expander("Analysis"):
            st.json(analysis, expanded=False)
    if c.decisions:
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "at": d.at,
                        "action": d.action,
                        "step": d.step,
                        "weight": d.weight,
                        "reason": d.reason,
                        "by": d.actor,
                    }
                    for d in reversed(c.decisions)
                ]
            ),
            hide_index=True,
        )


@st.fragment(run_every=LIVE_TTL)
def _live() -> None:
    ws = workspace()
    policies = ws.serving.traffic.list()
    if not policies:
        empty(
            "deployments",
            "Serve a model with `llmops serve start` and route it with "
            "`llmops traffic set NAME --stable MODEL@production`.",
        )
        return
    for policy in policies:
        status = ws.serving.show(policy.logical)
        with st.container(border=True):
            killed = " · **killed**" if status.killed else ""
            st.subheader(policy.logical)
            st.markdown(
                f"stable **{status.stable}** · candidate **{status.candidate or '–'}** "
                f"at {status.weight:g}% · sticky {status.sticky or 'none'} · "
                f"shadow {status.shadow:g} · revision {status.revision}{killed}"
            )
            _arms(status.arms)
            _canary(policy.logical)
    st.caption("Refreshes every few seconds.")


def render() -> None:
    """The page."""
    st.title("Deployments and canaries")
    _live()


render()
