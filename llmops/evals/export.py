"""Exports of an eval run's results: JSONL (one result per line), CSV (flat columns), and JUnit
XML (one test case per case and target) for CI systems."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterator
from typing import TYPE_CHECKING, Literal
from xml.sax.saxutils import escape, quoteattr

from llmops._plugins import Registry
from llmops.errors import InputError

if TYPE_CHECKING:
    from llmops.evals.results import EvalRuns

__all__ = ["EXPORT_FORMATS", "export_run"]

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
        fields = [
            "case_index",
            "case_id",
            "target",
            "vars",
            "output",
            "passed",
            "score",
            "error",
            "prompt_tokens",
            "completion_tokens",
            "cost",
            "latency_ms",
            "cached",
        ]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for r in runs.results(run_id):
            writer.writerow({**r, "vars": json.dumps(r["vars"], ensure_ascii=False)})
            if buf.tell() > 1 << 16:
                yield buf.getvalue()
                buf.seek(0)
                buf.truncate()
        yield buf.getvalue()
    elif fmt == "junit":
        yield from _junit(runs, run_id)
    else:
        raise InputError(f"unknown export format {fmt!r}", hint="use jsonl, csv or junit")


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
