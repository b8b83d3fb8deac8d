"""Eval runs: the list with pass rates and their intervals, and one run's detail: per-target
summaries, paired comparisons of its targets, pairwise results with position consistency, the
judge's calibration against human labels, and exports."""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st
from app_common import FOREVER, empty, num, pct, query, workspace


def _duration(run: Any) -> str:
    if run.ended_at is None:
        return "running"
    return f"{(run.ended_at - run.started_at).total_seconds():.1f} s"


def _rate(t: dict[str, Any]) -> str:
    return (
        f"{pct(t.get('pass_rate'))} "
        f"[{pct(t.get('pass_rate_ci_low'))}, {pct(t.get('pass_rate_ci_high'))}]"
    )


@st.cache_data(show_spinner=False, ttl=FOREVER, max_entries=64)
def _export(run_id: str, fmt: str, _version: tuple[Any, ...]) -> str:
    return "".join(workspace().eval_runs.export(run_id, fmt))  # type: ignore[arg-type]


def _calibration(summary: dict[str, Any]) -> None:
    calibration = summary.get("calibration") or {}
    if not calibration:
        st.caption(
            "No human labels on this run's cases: label some on the Human review page "
            "and apply them to see the judge's calibration."
        )
        return
    for kind, data in calibration.items():
        st.markdown(
            f"**Judge vs people ({kind})**: agreement {pct(data['agreement'])}, "
            f"Cohen's kappa {num(data['kappa'], '.2f')} over {data['n']} case(s)"
        )
        confusion = pd.DataFrame(data["confusion"]).T
        confusion.index.name = "human \\ judge"
        st.dataframe(confusion, width="content")


def _detail(run: Any) -> None:
    st.subheader(f"{run.run_id} · {run.suite_name}")
    st.caption(
        f"{run.status} · {run.cases} case(s) · {run.errors} error(s) · "
        f"started {run.started_at:%Y-%m-%d %H:%M:%S} by {run.created_by} · "
        f"{_duration(run)}"
    )
    summary = run.summary or {}
    targets = summary.get("targets") or []
    if targets:
        st.markdown("**Targets**")
        st.dataframe(
            pd.DataFrame(
                [
                    {
                        "target": t["name"],
                        "pass rate [95% CI]": _rate(t),
                        "mean score": num(t.get("mean_score")),
                        "graded": t.get("graded"),
                        "errors": t.get("errors"),
                        "cost $": num(t.get("cost"), ".5f"),
                        "p50 latency ms": num(t.get("latency_ms_p50"), ".0f"),
                        "cached": t.get("cached"),
                    }
                    for t in targets
                ]
            ),
            hide_index=True,
        )
    for comp in summary.get("comparisons") or []:
        st.markdown(
            f"**{comp['b']} vs {comp['a']}**: difference {num(comp['diff'], '+.3f')} "
            f"[{num(comp['diff_ci_low'], '+.3f')}, {num(comp['diff_ci_high'], '+.3f')}], "
            f"p = {num(max(comp['p_bootstrap'], comp['p_sign']), '.3g')}, "
            f"wins/ties/losses {comp['wins']}/{comp['ties']}/{comp['losses']}"
        )
    pairwise = summary.get("pairwise")
    if pairwise:
        st.markdown(
            f"**Pairwise judge**: {pairwise['judged']} judged, "
            f"{pairwise['judge_errors']} error(s); wins {pairwise['wins']}, "
            f"ties {pairwise['ties']}; {pairwise['b']} win rate "
            f"{pct(pairwise.get('win_rate_b'))} (sign test p = "
            f"{num(pairwise.get('p_sign'), '.3g')}); position consistency "
            f"{pct(summary.get('position_consistency'))}"
        )
    _calibration(summary)
    version = (run.status, run.cases, str(run.ended_at))
    cols = st.columns(3)
    for col, fmt, mime in zip(
        cols,
        ("jsonl", "csv", "junit"),
        ("application/jsonl", "text/csv", "application/xml"),
        strict=True,
    ):
        col.download_button(
            f"Export {fmt}",
            data=_export(run.run_id, fmt, version),
            file_name=f"{run.run_id}.{'xml' if fmt == 'junit' else fmt}",
            mime=mime,
            key=f"export_{fmt}",
        )
    st.link_button("Compare with another run", f"?page=compare&a={run.run_id}&b={run.run_id}")


def render() -> None:
    """The page."""
    ws = workspace()
    st.title("Eval runs")
    runs = list(ws.eval_runs.list(limit=200))
    if not runs:
        empty("eval runs", "Run a suite with `llmops eval run evals/<suite>.yaml`.")
        return
    rows = []
    for r in runs:
        targets = (r.summary or {}).get("targets") or []
        rows.append(
            {
                "run": r.run_id,
                "suite": r.suite_name,
                "status": r.status,
                "targets": ", ".join(r.targets),
                "pass rates [95% CI]": "; ".join(f"{t['name']}: {_rate(t)}" for t in targets),
                "cost $": num(sum(t.get("cost") or 0 for t in targets), ".5f"),
                "duration": _duration(r),
                "started": r.started_at,
            }
        )
    st.dataframe(pd.DataFrame(rows), hide_index=True)
    ids = [r.run_id for r in runs]
    wanted = query("run")
    chosen = st.selectbox("Run", ids, index=ids.index(wanted) if wanted in ids else 0, key="run")
    st.query_params.update({"page": "runs", "run": chosen})
    _detail(next(r for r in runs if r.run_id == chosen))


render()
