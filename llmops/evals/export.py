"""Exports of an eval run's results: JSONL (one result per line), CSV and Parquet (flat columns:
``vars.<name>`` and ``assertion.<type>.passed/score/reason``, as in ``to_pandas()``), and JUnit
XML (one test case per case and target) for CI systems."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal
from xml.sax.saxutils import escape, quoteattr

from llmops._atomic import atomic_path
from llmops._plugins import Registry
from llmops.errors import InputError
from llmops.evals.frames import flatten_result

if TYPE_CHECKING:
    from llmops.evals.results import EvalRuns

__all__ = ["EXPORT_FORMATS", "export_run", "write_parquet"]

EXPORT_FORMATS: Registry[str] = Registry("export format")
"""Export formats (the ``fmt`` literal of :func:`export_run` is checked against these)."""
EXPORT_FORMATS.register("jsonl", "one result per line")
EXPORT_FORMATS.register("csv", "flat columns")
EXPORT_FORMATS.register("junit", "JUnit XML for CI systems")


def export_run(runs: EvalRuns, run_id: str, fmt: Literal["jsonl", "csv", "junit"]) -> Iterator[str]:
    """The run's results as JSONL, CSV or JUnit XML text, in pieces."""
    if fmt == "jsonl":
        for r in runs.results(run_id):
            yield json.dumps(r, ensure_ascii=False, default=str) + "\n"
    elif fmt == "csv":
        yield from _csv(runs, run_id)
    elif fmt == "junit":
        yield from _junit(runs, run_id)
    else:
        raise InputError(f"unknown export format {fmt!r}", hint="use jsonl, csv or junit")


_LEADING = (
    "case_index", "case_id", "target", "output", "passed", "score", "error", "prompt_tokens",
    "completion_tokens", "cost", "latency_ms", "cached", "human",
)  # fmt: skip
"""CSV columns before the ``vars.*`` and ``assertion.*`` ones."""


def _csv(runs: EvalRuns, run_id: str) -> Iterator[str]:
    # Columns are the union over every row (cases differ in variables and checks): one pass
    # to find them, one to write, so that memory stays at one page of results.
    found: dict[str, None] = dict.fromkeys(_LEADING)
    for row in runs.results(run_id):
        found.update(dict.fromkeys(flatten_result(row)))
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(found), extrasaction="ignore")
    writer.writeheader()
    for row in runs.results(run_id):
        writer.writerow({k: _cell(v) for k, v in flatten_result(row).items()})
        if buf.tell() > 1 << 16:
            yield buf.getvalue()
            buf.seek(0)
            buf.truncate()
    yield buf.getvalue()


_FORMULA = ("=", "+", "-", "@", "\t", "\r")
"""First characters a spreadsheet runs as a formula (CSV injection, OWASP)."""


def _cell(value: Any) -> Any:
    """A CSV cell: nested values as JSON; text a spreadsheet would run as a formula (model
    output is untrusted) is prefixed with a quote, as OWASP recommends."""
    value = _text(value)
    if isinstance(value, str) and value.startswith(_FORMULA):
        return "'" + value
    return value


def _nan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def _text(value: Any) -> Any:
    return json.dumps(value, ensure_ascii=False) if isinstance(value, dict | list) else value


def write_parquet(runs: EvalRuns, run_id: str, path: str | os.PathLike[str]) -> Path:
    """The run's results as a Parquet file with flat columns (written beside ``path`` and
    renamed into place, so a reader never sees half a file).

    Raises:
        MissingDependencyError: pandas or pyarrow is not installed.
    """
    from llmops._extras import require

    require("pandas", "pyarrow", feature="Parquet export")
    frame = runs.results(run_id).to_pandas()
    for column in frame.columns:
        # Nested values (judge samples ...) as JSON text; a column whose values differ in type
        # (a variable that is 1 in one case and "two" in the next) as text: Parquet columns
        # have one type.
        kinds = {type(v) for v in frame[column] if v is not None and not _nan(v)}
        if len(kinds) > 1 or kinds & {dict, list}:
            frame[column] = frame[column].map(
                lambda v: None if v is None else _text(v) if isinstance(v, dict | list) else str(v)
            )
    with atomic_path(path) as tmp:
        frame.to_parquet(tmp, index=False)
    return Path(path)


def _junit(runs: EvalRuns, run_id: str) -> Iterator[str]:
    run = runs.get(run_id)
    yield '<?xml version="1.0" encoding="UTF-8"?>\n'
    yield f"<testsuites name={quoteattr(run.suite_name)}>\n"
    for target in run.targets:
        results = list(runs.results(run_id, target=target))
        failures = sum(1 for r in results if r["passed"] is False)
        errors = sum(1 for r in results if r["passed"] is None)
        yield (
            f'  <testsuite name={quoteattr(target)} tests="{len(results)}" '
            f'failures="{failures}" errors="{errors}">\n'
        )
        for r in results:
            name = quoteattr(str(r["case_id"] or f"case-{r['case_index']}"))
            seconds = r["latency_ms"] / 1000
            cls = quoteattr(target)
            yield f'    <testcase classname={cls} name={name} time="{seconds:.3f}">'
            if r["passed"] is None:
                yield f"<error message={quoteattr(_clip(r['error'] or 'error'))}/>"
            elif not r["passed"]:
                reasons = "; ".join(
                    a.get("reason", "") for a in r["assertions"] if a.get("passed") is False
                )
                yield (
                    f"<failure message={quoteattr(_clip(reasons or 'failed'))}>"
                    f"{escape(_clip(r['output'], 4000))}</failure>"
                )
            yield "</testcase>\n"
        yield "  </testsuite>\n"
    yield "</testsuites>\n"


def _clip(text: str, n: int = 500) -> str:
    cleaned = "".join(c if c.isprintable() or c in "\n\t" else "\ufffd" for c in text)
    return cleaned[:n]
