"""Eval results as a pandas DataFrame, for notebooks: one row per case and target, with the
case variables (``vars.<name>``), its metadata (``metadata.<key>``) and each assertion's
outcome (``assertion.<type>.passed``, ``.score``, ``.reason``) in their own columns."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

__all__ = ["Results", "flatten_result"]


def flatten_result(row: dict[str, Any]) -> dict[str, Any]:
    """One result as flat columns."""
    flat = {k: v for k, v in row.items() if k not in ("vars", "metadata", "assertions")}
    for name, value in (row.get("vars") or {}).items():
        flat[f"vars.{name}"] = value
    for name, value in (row.get("metadata") or {}).items():
        flat[f"metadata.{name}"] = value
    seen: dict[str, int] = {}
    for assertion in row.get("assertions") or []:
        kind = str(assertion.get("type", "assertion"))
        seen[kind] = seen.get(kind, 0) + 1
        label = kind if seen[kind] == 1 else f"{kind}.{seen[kind]}"
        for key in ("passed", "score", "reason"):
            flat[f"assertion.{label}.{key}"] = assertion.get(key)
    return flat


class Results(Iterator[dict[str, Any]]):
    """A run's results, streamed: iterate for dicts (the JSON form), or :meth:`to_pandas`."""

    def __init__(self, rows: Iterator[dict[str, Any]]) -> None:
        self._rows = rows

    def __iter__(self) -> Results:
        return self

    def __next__(self) -> dict[str, Any]:
        return next(self._rows)

    def to_pandas(self) -> Any:
        """The (remaining) results as a ``pandas.DataFrame``, one row per case and target.

        Raises:
            MissingDependencyError: pandas is not installed.
        """
        from llmops._extras import require

        require("pandas", feature="to_pandas()")
        import pandas as pd

        return pd.DataFrame([flatten_result(row) for row in self._rows])
