"""What every page shares: the workspace (opened once per server), cached reads of immutable
records, and small display helpers. No statistics here: pages show what llmops computes."""

from __future__ import annotations

import math
import os
import re
from typing import Any

import streamlit as st

from llmops import Workspace
from llmops.errors import LLMOpsError

FOREVER = None
"""``st.cache_data`` ttl for records that never change (a finished run, a version)."""
LIVE_TTL = 5
"""Seconds a read of something still changing (a running eval, a canary) is reused."""


@st.cache_resource(show_spinner=False)
def _open(root: str) -> Workspace:
    return Workspace.open(root or None)


def workspace() -> Workspace:
    """The workspace ``LLMOPS_WORKSPACE`` (or the current folder) names; stops the page with a
    friendly message when there is none."""
    try:
        return _open(os.environ.get("LLMOPS_WORKSPACE", ""))
    except LLMOpsError as exc:
        st.error(f"No llmops workspace to show: {exc}")
        st.info("Create one with `llmops init`, then start the dashboard there with `llmops app`.")
        st.stop()
        raise  # st.stop() raises; this keeps type checkers sure the function never falls off


def empty(what: str, how: str) -> None:
    """The friendly empty state of a page: what is missing and the command that makes it."""
    st.info(f"No {what} yet. {how}")


def num(value: Any, fmt: str = ".3f", missing: str = "–") -> str:
    """A number for display (``–`` for None and NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, fmt)


def pct(value: Any) -> str:
    """A share as a percentage."""
    return num(None if value is None else value * 100, ".1f") + ("%" if value is not None else "")


_MARKDOWN = re.compile(r"([\\`*_{}\[\]()#+!|<>$~])")


def plain(value: Any) -> str:
    """Untrusted text (a case id, a model name) made safe inside a label or Markdown: its
    Markdown characters escaped, newlines flattened."""
    return _MARKDOWN.sub(r"\\\1", " ".join(str(value).split()))


def query(name: str, default: str | None = None) -> str | None:
    """A query parameter of the page's URL (deep links)."""
    value = st.query_params.get(name)
    return value if value else default
