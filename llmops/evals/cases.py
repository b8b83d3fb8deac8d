"""One case of an eval run: render each target's prompt, call its model, score the answer with
every assertion (judges included), and build the result rows; whatever goes wrong with one case
is recorded as that case's error, never the end of the run."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from llmops.errors import PromptRenderError
from llmops.evals.engine import Engine, make_request
from llmops.evals.judging import Judges, question_of
from llmops.evals.providers import Completion, Provider, ProviderError
from llmops.evals.scorers import ScoreContext, ScoreResult, score
from llmops.evals.suite import LoadedSuite, ModelSpec, NumberedCase, Suite

if TYPE_CHECKING:
    from llmops._redact import Redactor
    from llmops.prompts import PromptSpec

__all__ = ["MAX_OUTPUT_CHARS", "Row", "Target", "run_case", "scrubber", "suite_redactor"]

Row = dict[str, Any]
"""A finished result (``kind`` ``result``) or pairwise judgement (``kind`` ``pair``)."""

MAX_OUTPUT_CHARS = 1_000_000
"""Longer outputs are scored whole but stored cut to this many characters."""


@dataclass(slots=True)
class Target:
    name: str
    spec: PromptSpec
    model: ModelSpec
    provider: Provider


def _render_value(value: Any, variables: dict[str, Any]) -> Any:
    """An assertion value with ``{{ var }}`` templates filled from the case (as promptfoo does),
    rendered in the sandbox; values are data, never templates themselves."""
    from llmops.prompts import render_template

    if isinstance(value, str) and "{{" in value:
        return render_template(value, variables, what="assertion value")
    if isinstance(value, list):
        return [_render_value(v, variables) for v in value]
    return value


async def run_case(
    engine: Engine,
    judges: Judges,
    loaded: LoadedSuite,
    targets: list[Target],
    item: NumberedCase,
    run_id: str,
    skip: set[tuple[int, str]],
    pairwise: bool,
) -> list[Row]:
    case = item.case
    assertions = [*loaded.suite.default_assert, *case.assert_]
    outputs: dict[str, tuple[str, list[dict[str, str]]]] = {}

    async def one(target: Target) -> Row | None:
        try:
            values = {k: v for k, v in case.vars.items() if k in target.spec.variables}
            messages = target.spec.render(values).messages
        except PromptRenderError as exc:
            return _errored(run_id, item, target.name, f"render failed: {exc.one_line()}")
        try:
            completion = await engine.call(
                target.provider,
                target.model,
                make_request(messages, target.model),
                sample=item.sample,
            )
        except ProviderError as exc:
            return _errored(run_id, item, target.name, f"provider failed: {exc}")
        outputs[target.name] = (completion.text, messages)
        if (item.index, target.name) in skip:
            return None
        judge = judges.hook(messages, case) if judges.judge is not None else None
        ctx = ScoreContext(
            vars=case.vars,
            expected=case.expected,
            latency_s=completion.latency_s,
            cost=completion.cost,
            folder=loaded.folder,
            judge=judge,
        )
        scored: list[dict[str, Any]] = []
        results: list[tuple[ScoreResult, float]] = []
        for raw in assertions:
            try:
                assertion = raw.model_copy(update={"value": _render_value(raw.value, case.vars)})
            except PromptRenderError as exc:
                results.append((ScoreResult(None, 0.0, exc.one_line()), raw.weight))
                scored.append(
                    {"type": raw.type, "passed": None, "score": 0.0, "reason": exc.one_line()}
                )
                continue
            ctx.threshold = assertion.threshold
            result = await score(assertion.type, completion.text, assertion.value, ctx)
            results.append((result, assertion.weight))
            scored.append({"type": assertion.type, **result.to_json()})
        return _result(run_id, item, target.name, completion, results, scored)

    async def guarded(target: Target) -> Row | None:
        # One case can never end the run: whatever goes wrong scoring it is that case's error.
        try:
            return await one(target)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit, MemoryError):
            raise
        except Exception as exc:  # recorded on the case, not swallowed
            return _errored(run_id, item, target.name, f"scoring failed: {_describe(exc)}")

    rows: list[Row] = [
        r for r in await asyncio.gather(*(guarded(t) for t in targets)) if r is not None
    ]
    if pairwise and (item.index, "*pair*") not in skip:
        a, b = targets[0].name, targets[1].name
        if a in outputs and b in outputs:
            try:
                pair = await judges.pairwise(
                    item, question_of(outputs[a][1]), outputs[a][0], outputs[b][0]
                )
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit, MemoryError):
                raise
            except Exception as exc:  # a judge error of this pair
                pair = judges.failed_pair(item, f"pairwise judging failed: {_describe(exc)}")
            pair["run_id"] = run_id
            rows.append(pair)
    return rows


def suite_redactor(suite: Suite) -> Redactor:
    """Redaction for a suite's run: the values of every key variable its models name."""
    from llmops._redact import Redactor

    models = [t.model for t in suite.targets] + (suite.judge.judges if suite.judge else [])
    return Redactor(m.api_key_env for m in models if m.api_key_env)


def scrubber(redactor: Redactor) -> Callable[[Row], Row]:
    """Rows with secrets removed before they are stored: errors lose anything shaped like a
    key (endpoints echo requests in error bodies); outputs and judge replies lose the values of
    the key variables (a model may repeat what it was sent)."""

    def scrub(row: Row) -> Row:
        if row.get("error"):
            row["error"] = redactor(row["error"])
        if row.get("output"):
            row["output"] = redactor.values(row["output"])
        for assertion in row.get("assertions") or []:
            if assertion.get("reason"):
                assertion["reason"] = redactor(assertion["reason"])
            if "judge_replies" in assertion:
                assertion["judge_replies"] = [
                    redactor.values(t) for t in assertion["judge_replies"]
                ]
        details = row.get("details")
        if isinstance(details, dict):
            details["errors"] = [redactor(e) for e in details.get("errors", [])]
            details["replies"] = [redactor.values(t) for t in details.get("replies", [])]
        return row

    return scrub


def _describe(exc: BaseException) -> str:
    from llmops.errors import LLMOpsError

    if isinstance(exc, LLMOpsError):
        return exc.one_line()
    return f"{type(exc).__name__}: {str(exc)[:500]}"


def _row(run_id: str, item: NumberedCase, target: str, **fields: Any) -> Row:
    """A result row with every column set (batched inserts need the same keys in every row)."""
    return {
        "kind": "result", "run_id": run_id, "case_index": item.index, "target": target,
        "case_id": item.case.id, "vars": item.case.vars,
        "case_metadata": item.case.metadata or None, "output": "", "passed": None,
        "score": None, "error": None, "assertions": [], "prompt_tokens": 0,
        "completion_tokens": 0, "cost": 0.0, "latency_ms": 0.0, "cached": False,
        "human": item.case.human, **fields,
    }  # fmt: skip


def _errored(run_id: str, item: NumberedCase, target: str, error: str) -> Row:
    return _row(run_id, item, target, error=error[:4000])


def _result(
    run_id: str,
    item: NumberedCase,
    target: str,
    completion: Completion,
    results: list[tuple[ScoreResult, float]],
    scored: list[dict[str, Any]],
) -> Row:
    errors = [r.reason for r, _ in results if r.passed is None]
    total_weight = sum(w for _, w in results) or 1.0
    if errors:
        passed, score, error = None, None, "; ".join(errors)[:4000]
    elif results:
        passed = all(r.passed for r, _ in results)
        score, error = sum(r.score * w for r, w in results) / total_weight, None
    else:
        passed, score, error = True, 1.0, None  # nothing to check: the call itself succeeded
    output = completion.text
    if len(output) > MAX_OUTPUT_CHARS:
        output = (
            output[:MAX_OUTPUT_CHARS]
            + f"\n[... {len(completion.text) - MAX_OUTPUT_CHARS} more characters not stored]"
        )
    return _row(
        run_id, item, target, output=output, passed=passed, score=score, error=error,
        assertions=scored, prompt_tokens=completion.prompt_tokens,
        completion_tokens=completion.completion_tokens, cost=completion.cost,
        latency_ms=completion.latency_s * 1000, cached=completion.cached,
    )  # fmt: skip
