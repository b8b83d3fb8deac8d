"""The llmops dashboard: ``llmops app`` (or ``streamlit run app/dashboard.py``) for the workspace
``LLMOPS_WORKSPACE`` names (else the current folder's).

Pages read llmops's public Python API only, so a notebook and the dashboard agree. A link's
``?page=NAME`` opens that page (``?page=compare&a=RUN&b=RUN`` a comparison).
"""

from __future__ import annotations

import sys
from pathlib import Path

import streamlit as st

HERE = Path(__file__).resolve().parent
if str(HERE) not in sys.path:  # the pages import app_common from here
    sys.path.insert(0, str(HERE))

PAGES = {
    "Evaluation": [
        ("compare", "Compare", "views/compare.py", ":material/compare_arrows:"),
        ("runs", "Eval runs", "views/runs.py", ":material/fact_check:"),
        ("review", "Human review", "views/review.py", ":material/how_to_vote:"),
    ],
    "Assets": [
        ("prompts", "Prompts", "views/prompts.py", ":material/chat:"),
        ("registry", "Registry and lineage", "views/registry.py", ":material/account_tree:"),
        ("training", "Training runs", "views/training.py", ":material/monitoring:"),
    ],
    "Serving": [
        ("deployments", "Deployments and canaries", "views/deployments.py", ":material/dns:"),
    ],
}

st.set_page_config(page_title="llmops", page_icon=":material/science:", layout="wide")
pages = {
    slug: st.Page(HERE / path, title=title, icon=icon, url_path=slug, default=slug == "compare")
    for section in PAGES.values()
    for slug, title, path, icon in section
}
current = st.navigation(
    {section: [pages[slug] for slug, *_ in entries] for section, entries in PAGES.items()}
)
wanted = st.query_params.get("page")
if wanted in pages and current.url_path != pages[wanted].url_path:
    # a link's ?page=NAME: go there, keeping its other parameters (a=, b=, case= ...)
    rest = {k: v for k, v in st.query_params.to_dict().items() if k != "page"}
    st.switch_page(pages[wanted], query_params=rest)
current.run()
