"""Registry and lineage: models with their versions and aliases, promotion history with
approvals, and a version's lineage as a graph (prompt, dataset, recipe, run, eval runs,
promotions)."""

from __future__ import annotations

import pandas as pd
import streamlit as st
from app_common import FOREVER, empty, query, workspace


@st.cache_data(show_spinner=False, ttl=FOREVER, max_entries=64)
def _lineage(ref: str, _version: int) -> str:
    return workspace().lineage(ref).to_dot()


def render() -> None:
    """The page."""
    ws = workspace()
    st.title("Registry and lineage")
    models = ws.models.list()
    if not models:
        empty(
            "models",
            "Store one with `llmops train recipes/<recipe>.yaml` or "
            "`llmops artifacts push DIR --name NAME --kind base-model`.",
        )
        return
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "model": m.name,
                    "kind": m.kind,
                    "latest": m.latest_version,
                    "versions": m.versions,
                    "aliases": ", ".join(f"{a}→{v}" for a, v in sorted(m.aliases.items())),
                    "guarded": ", ".join(m.guarded),
                }
                for m in models
            ]
        ),
        hide_index=True,
    )
    names = [m.name for m in models]
    wanted = query("model")
    name = st.selectbox(
        "Model", names, index=names.index(wanted) if wanted in names else 0, key="model"
    )
    model = next(m for m in models if m.name == name)
    versions = list(range(model.latest_version, 0, -1))
    version = st.selectbox("Version", versions, key="version")
    st.query_params.update({"page": "registry", "model": name})
    info = ws.models.show(f"{name}@{version}")
    cols = st.columns(4)
    cols[0].metric(f"Version of {name}", f"@{info.version}")
    cols[1].metric("Aliases", ", ".join(info.aliases) or "–")
    cols[2].metric("Eval runs", len(info.eval_runs))
    cols[3].metric("Semantic version", info.semver or "–")
    st.caption(
        f"{info.digest} · by {info.created_by} · {info.created_at:%Y-%m-%d %H:%M:%S}"
        + (f" · from run {info.run}" if info.run else "")
    )
    st.subheader("Lineage")
    st.graphviz_chart(_lineage(f"{name}@{info.version}", info.version), width="stretch")
    st.subheader("Promotions and approvals")
    history = ws.models.history(name)
    if history:
        st.dataframe(pd.DataFrame(history).astype(str), hide_index=True)
    else:
        st.caption("No registry decision yet: promote with `llmops models promote NAME@V ALIAS`.")


render()
