"""The eval runner: every case against every target, scored, stored, summarised.

load     the suite (or a promptfoo config), its targets' prompts and the judge prompts
check    every case has the variables its prompts need (all problems at once)
record   a new run, or reopen one to resume (finished cases are not called again)
execute  asyncio workers pull cases lazily; model calls share one concurrency limit,
         per-endpoint rate limits, retries with backoff (429, 5xx, timeouts, drops) and the
         response cache; finished cases are written in batches (bounded memory)
finish   per-target statistics, pairwise and calibration summaries on the run record
"""

from __future__ import annotations

import asyncio
import math
import os
import random
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops._liveline import LiveLine, bar
from llmops.errors import InputError, PromptRenderError, SuiteError
from llmops.evals.cache import ResponseCache, cache_key
from llmops.evals.judge import (
    aggregate,
    combine_orders,
    delimit,
    ensure_judge_prompts,
    parse_pairwise,
    parse_single,
)
from llmops.evals.providers import Completion, Provider, ProviderError, Request, make_provider
from llmops.evals.results import EvalRunRecord, new_eval_id
from llmops.evals.scorers import MODEL_GRADED, ScoreContext, ScoreResult, run_scorer
from llmops.evals.suite import (
    Assertion,
    Case,
    LoadedSuite,
    ModelSpec,
    NumberedCase,
    Suite,
    iter_cases,
    load_suite,
)

if TYPE_CHECKING:
    from llmops.artifacts.resolver import ModelResolver
    from llmops.evals.results import EvalRuns
    from llmops.prompts import PromptRegistry, PromptSpec

__all__ = ["EvalOutcome", "run_suite"]

Row = dict[str, Any]
"""A finished result (``kind`` ``result``) or pairwise judgement (``kind`` ``pair``)."""

MAX_OUTPUT_CHARS = 1_000_000
"""Longer outputs are scored whole but stored cut to this many characters."""
_FLUSH_ROWS = 256


@dataclass(slots=True, kw_only=True)
class EvalOutcome:
    """A finished (or resumed) run and how it went."""

    run: EvalRunRecord
    seconds: float
    calls: int
    """Model calls actually made (not answered from the cache)."""
    cache_hits: int
    retries: int
    error_kinds: list[dict[str, Any]] = field(default_factory=list)
    """The first error of each kind in this session: ``{"kind", "count", "example"}``."""

    @property
    def failed_targets(self) -> list[str]:
        """Targets of which every case errored (nothing was graded)."""
        return [
            t["name"]
            for t in (self.run.summary or {}).get("targets", [])
            if t["cases"] and not t["graded"]
        ]

    def to_json(self) -> dict[str, Any]:
        """The ``eval run --json`` contract plus execution counts."""
        return {
            **self.run.to_json(),
            "seconds": round(self.seconds, 3),
            "calls": self.calls,
            "cache_hits": self.cache_hits,
            "retries": self.retries,
            "error_kinds": self.error_kinds,
            "failed_targets": self.failed_targets,
        }


@dataclass(slots=True)
class _Target:
    name: str
    spec: PromptSpec
    model: ModelSpec
    provider: Provider


@dataclass(slots=True)
class _Stats:
    calls: int = 0
    hits: int = 0
    retries: int = 0
    done: int = 0
    errors: int = 0
    started: float = field(default_factory=time.perf_counter)
    kinds: dict[str, list[Any]] = field(default_factory=dict)

    def saw_error(self, message: str) -> None:
        """Count an error under its kind (the message with numbers and quoted text blanked)."""
        kind = re.sub(r"'[^']*'|\"[^\"]*\"|\d+(\.\d+)?", "_", message)[:80]
        entry = self.kinds.setdefault(kind, [0, message[:500]])
        entry[0] += 1

    def error_kinds(self) -> list[dict[str, Any]]:
        return [
            {"kind": kind, "count": count, "example": example}
            for kind, (count, example) in sorted(self.kinds.items(), key=lambda kv: -kv[1][0])
        ]


@dataclass(frozen=True, slots=True)
class _Stage:
    """What a run uses: prompts (targets' and judges'), the run store, the response cache,
    and model files for local providers."""

    prompts: PromptRegistry
    results: EvalRuns
    cache: Path | None
    models: ModelResolver | None
    root: Path | None


def run_suite(
    source: str | os.PathLike[str] | LoadedSuite,
    *,
    prompts: PromptRegistry,
    results: EvalRuns,
    cache: Path | None = None,
    models: ModelResolver | None = None,
    root: Path | None = None,
    concurrency: int | None = None,
    no_cache: bool = False,
    resume: str | None = None,
    live: bool = False,
) -> EvalOutcome:
    """Run a suite file (llmops or promptfoo) and store every result.

    Args:
        prompts: Registry prompts named by targets and judges (built-in judges go here too).
        results: Where the run and its results are stored.
        cache: The response cache file (None: no cache).
        models: Resolves local models and adapters (``provider: transformers``).
        root: The project folder whose git state is recorded (default: ``models.root``).
        concurrency: Model calls in flight (default: the suite's ``concurrency``).
        no_cache: Call the models even for requests answered before (answers are still cached).
        resume: Continue this run: finished cases are kept, the rest are run.
        live: A progress line on stderr.

    Raises:
        SuiteError: The suite is invalid, or a case lacks a variable its prompt needs.
    """
    loaded = source if isinstance(source, LoadedSuite) else load_suite(source)
    if root is None and models is not None:
        root = models.root
    ws = _Stage(prompts, results, cache, models, root)
    return asyncio.run(
        _run(ws, loaded, concurrency=concurrency, no_cache=no_cache, resume=resume, live=live)
    )


def _prompt_spec(ws: _Stage, target: Any) -> PromptSpec:
    if isinstance(target.prompt, str):
        return ws.prompts.get(target.prompt).spec
    return _inline_spec(target.name, target.prompt)


def _inline_spec(label: str, prompt: list[Any]) -> PromptSpec:
    """A prompt spec for messages written into the suite (a target's or the judge's)."""
    from llmops.prompts import PromptSpec

    messages = [{"role": m.role, "content": m.content} for m in prompt]
    name = "inline-" + "".join(c if c.isalnum() or c in "._-" else "-" for c in label)
    inferred = PromptSpec.model_validate({"name": name[:128], "messages": messages})
    # Case variables come from YAML, JSONL and CSV as any JSON type; an inline prompt takes them
    # as they are (a registry prompt's declared types still apply).
    variables = {v: {"type": "any"} for v in inferred.variables}
    return PromptSpec.model_validate(
        {"name": name[:128], "messages": messages, "variables": variables}
    )


def _check_variables(loaded: LoadedSuite, targets: list[_Target]) -> int:
    """Count the cases, raising one error naming every case whose variables a prompt refuses
    (missing, or of the wrong type for a registry prompt's declared variables)."""
    problems: list[str] = []
    count = 0
    for item in iter_cases(loaded):
        count += 1
        for target in targets:
            values = {k: v for k, v in item.case.vars.items() if k in target.spec.variables}
            try:
                target.spec.bind(values)
            except PromptRenderError as exc:
                detail = exc.message.partition(": ")[2] or exc.message
                problems.append(
                    f"{item.where}: case {item.index} (target {target.name!r}): {detail}"
                )
    if problems:
        more = f"; and {len(problems) - 10} more" if len(problems) > 10 else ""
        raise SuiteError(
            f"bad case variables: {'; '.join(problems[:10])}{more}",
            hint="fix the cases' vars (or the prompt's declared variables)",
        )
    if count == 0:
        raise SuiteError(
            "the suite has no cases (the cases file is empty)",
            path=str(loaded.path) if loaded.path else None,
        )
    return count


class _Engine:
    """Model calls with one concurrency limit, rate limits, retries and the cache."""

    def __init__(
        self,
        suite: Suite,
        *,
        concurrency: int,
        cache: ResponseCache | None,
        read_cache: bool,
        stats: _Stats,
    ) -> None:
        self.suite = suite
        self.semaphore = asyncio.Semaphore(concurrency)
        self.cache = cache
        self.read_cache = read_cache
        self.stats = stats
        self._next_slot: dict[str, float] = {}
        self._inflight: dict[str, asyncio.Future[Completion]] = {}

    async def _rate_limit(self, provider: Provider, rps: float | None) -> None:
        if not rps:
            return
        now = time.monotonic()
        slot = max(now, self._next_slot.get(provider.key, now))
        self._next_slot[provider.key] = slot + 1.0 / rps
        if slot > now:
            await asyncio.sleep(slot - now)

    async def call(
        self, provider: Provider, model: ModelSpec, request: Request, sample: int = 0
    ) -> Completion:
        key = cache_key(provider.key, request, sample)
        if self.cache is not None and self.read_cache:
            hit = self.cache.get(key)
            if hit is not None:
                self.stats.hits += 1
                return hit
        # Identical requests in flight at the same time are paid for once too.
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Completion] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            completion = await self._call(provider, model, request)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: no "never retrieved" warning when nobody waits
            raise
        finally:
            self._inflight.pop(key, None)
        future.set_result(completion)
        if self.cache is not None:
            self.cache.put(key, completion)
        return completion

    async def _call(self, provider: Provider, model: ModelSpec, request: Request) -> Completion:
        attempt = 0
        while True:
            async with self.semaphore:
                await self._rate_limit(provider, model.rate_limit_rps)
                try:
                    self.stats.calls += 1
                    completion = await provider.complete(request)
                    return replace(completion, text=_clean_text(completion.text))
                except ProviderError as exc:
                    if not exc.retryable or attempt >= self.suite.max_retries:
                        tries = f" after {attempt + 1} attempts" if attempt else ""
                        raise ProviderError(f"{exc}{tries}", retryable=False) from None
                    delay = _backoff(exc.retry_after_s, attempt, cap=self.suite.timeout_s)
            attempt += 1
            self.stats.retries += 1
            await asyncio.sleep(delay)


def _backoff(retry_after_s: float | None, attempt: int, *, cap: float) -> float:
    """Seconds to wait before retry ``attempt + 1``: the server's Retry-After when it is a sane
    number, else jittered exponential backoff; never more than ``cap`` (the suite's per-call
    timeout), so a hostile or broken ``Retry-After: 1e9`` cannot hang a run."""
    jitter = 0.5 + random.random()  # noqa: S311 - jitter, not crypto
    if retry_after_s is not None and math.isfinite(retry_after_s) and retry_after_s >= 0:
        delay = retry_after_s * jitter
    else:
        delay = min(8.0, 0.25 * 2**attempt) * jitter
    return max(0.0, min(delay, cap))


def _clean_text(text: str) -> str:
    """Model text with lone surrogates (broken UTF-8, bad JSON escapes) replaced, whatever the
    provider, so it can be cached, stored and printed."""
    return text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")


def _request(messages: list[dict[str, str]], model: ModelSpec) -> Request:
    return Request(
        messages=tuple((m["role"], m["content"]) for m in messages),
        temperature=model.temperature,
        max_tokens=model.max_tokens,
        seed=model.seed,
    )


def _question(messages: list[dict[str, str]]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return users[-1] if users else messages[-1]["content"] if messages else ""


class _Judges:
    """Model-graded assertions and pairwise judging."""

    def __init__(
        self, ws: _Stage, suite: Suite, engine: _Engine, providers: dict[str, Provider]
    ) -> None:
        self.suite = suite
        self.judge = suite.judge
        self.engine = engine
        self.providers = providers
        self.prompts: dict[str, PromptSpec] = {}
        if self.judge is not None and self.judge.judges:
            if isinstance(self.judge.prompt, str):
                custom = ws.prompts.get(self.judge.prompt).spec
                self.prompts = dict.fromkeys(("rubric", "reference", "pairwise"), custom)
            elif self.judge.prompt:
                inline = _inline_spec("judge", self.judge.prompt)
                self.prompts = dict.fromkeys(("rubric", "reference", "pairwise"), inline)
            else:
                built = ensure_judge_prompts(ws.prompts)
                self.prompts = {
                    "rubric": built["llmops-judge-rubric"].spec,
                    "reference": built["llmops-judge-reference"].spec,
                    "pairwise": built["llmops-judge-pairwise"].spec,
                }

    async def _verdicts(self, kind: str, values: dict[str, str]) -> list[tuple[str, str | None]]:
        """Every judge x epoch reply: ``(text, error)``."""
        assert self.judge is not None
        spec = self.prompts[kind]
        known = {k: v for k, v in values.items() if k in spec.variables}
        messages = spec.render(known).messages
        calls = []
        for model in self.judge.judges:
            provider = self.providers[_model_key(model)]
            request = _request(messages, model)
            calls += [
                self.engine.call(provider, model, request, epoch)
                for epoch in range(self.judge.epochs)
            ]
        replies = await asyncio.gather(*calls, return_exceptions=True)
        out: list[tuple[str, str | None]] = []
        for reply in replies:
            if isinstance(reply, ProviderError):
                out.append(("", f"judge call failed: {reply}"))
            elif isinstance(reply, BaseException):
                raise reply
            else:
                out.append((reply.text, None))
        return out

    async def grade(
        self, assertion: Assertion, output: str, messages: list[dict[str, str]], case: Case
    ) -> tuple[ScoreResult, dict[str, Any]]:
        assert self.judge is not None
        kind = assertion.type.removeprefix("not-")
        threshold = assertion.threshold if assertion.threshold is not None else self.judge.threshold
        shown = [
            _for_judge(output),
            _for_judge(_question(messages)),
            _for_judge(str(case.expected or assertion.value or "")),
        ]
        values = {
            "rubric": _for_judge(str(assertion.value or self.judge.rubric)),
            "output": delimit(shown[0], "answer"),
            "question": delimit(shown[1], "question"),
            "expected": delimit(shown[2], "reference"),
        }
        prompt_kind = "reference" if kind == "reference-graded" else "rubric"
        if kind == "reference-graded":
            values["rubric"] = self.judge.rubric
        replies = await self._verdicts(prompt_kind, values)
        results = [
            ScoreResult(None, 0.0, error)
            if error
            else parse_single(
                text,
                field=self.judge.field,
                pattern=self.judge.pattern,
                threshold=threshold,
                untrusted=shown,
            )
            for text, error in replies
        ]
        verdict = aggregate(results, self.judge.aggregate, threshold)
        if verdict.passed is not None and threshold is not None and self.judge.aggregate == "mean":
            verdict = ScoreResult(verdict.score >= threshold, verdict.score, verdict.reason)
        if assertion.type.startswith("not-") and verdict.passed is not None:
            verdict = ScoreResult(not verdict.passed, 1 - verdict.score, verdict.reason)
        samples = [r.score for r in results if r.passed is not None]
        detail: dict[str, Any] = {
            "judge_samples": samples,
            "judge_replies": [t[-2000:] for t, _ in replies],
        }
        if len(output) > MAX_JUDGE_CHARS:
            detail["judge_saw_chars"] = MAX_JUDGE_CHARS
        return verdict, detail

    @staticmethod
    def failed_pair(case: NumberedCase, error: str) -> Row:
        """A pairwise row with no verdict: ``error`` says why."""
        return dict(
            kind="pair",
            run_id="",
            case_index=case.index,
            verdict=None,
            consistent=None,
            details={"orders": [], "replies": [], "errors": [error[:4000]]},
            human=case.case.human.upper() if case.case.human else None,
        )

    async def pairwise(self, case: NumberedCase, question: str, a: str, b: str) -> Row:
        assert self.judge is not None
        question, a, b = _for_judge(question), _for_judge(a), _for_judge(b)
        q = delimit(question, "question")
        shown = [question, a, b]
        first = await self._verdicts(
            "pairwise",
            {
                "question": q,
                "answer_a": delimit(a),
                "answer_b": delimit(b),
                "rubric": self.judge.rubric,
            },
        )
        second = await self._verdicts(
            "pairwise",
            {
                "question": q,
                "answer_a": delimit(b),
                "answer_b": delimit(a),
                "rubric": self.judge.rubric,
            },
        )
        combined = []
        for (t1, e1), (t2, e2) in zip(first, second, strict=True):
            v1 = (
                None
                if e1
                else parse_pairwise(
                    t1, field=self.judge.field, pattern=self.judge.pattern, untrusted=shown
                )
            )
            v2 = (
                None
                if e2
                else parse_pairwise(
                    t2, field=self.judge.field, pattern=self.judge.pattern, untrusted=shown
                )
            )
            combined.append(combine_orders(v1, v2))
        valid = [c for c in combined if c.verdict is not None]
        verdict, consistent = None, None
        if valid:
            votes: list[str] = [str(c.verdict) for c in valid]
            verdict = max(("A", "B", "TIE"), key=lambda v: (votes.count(v), v == "TIE"))
            consistent = sum(1 for c in valid if c.consistent) * 2 > len(valid) or (
                len(valid) == 1 and bool(valid[0].consistent)
            )
        return dict(
            kind="pair",
            run_id="",
            case_index=case.index,
            verdict=verdict,
            consistent=consistent,
            details={
                "orders": [[c.verdict, c.consistent] for c in combined],
                "replies": [t[-1000:] for t, _ in first + second],
                "errors": [e for _, e in first + second if e],
            },
            human=case.case.human.upper() if case.case.human else None,
        )


MAX_JUDGE_CHARS = 100_000
"""Text shown to a judge is cut to this many characters (a note says how much was cut), so one
huge answer cannot overflow the judge prompt's render limit or the judge's context."""


def _for_judge(text: str) -> str:
    if len(text) <= MAX_JUDGE_CHARS:
        return text
    cut = len(text) - MAX_JUDGE_CHARS
    return text[:MAX_JUDGE_CHARS] + f"\n[... {cut} more characters not shown to the judge]"


def _render_value(value: Any, variables: dict[str, Any]) -> Any:
    """An assertion value with ``{{ var }}`` templates filled from the case (as promptfoo does),
    rendered in the sandbox; values are data, never templates themselves."""
    from llmops.prompts import render_template

    if isinstance(value, str) and "{{" in value:
        return render_template(value, variables, what="assertion value")
    if isinstance(value, list):
        return [_render_value(v, variables) for v in value]
    return value


def _model_key(model: ModelSpec) -> str:
    return model.model_dump_json()


async def _case(
    engine: _Engine,
    judges: _Judges,
    loaded: LoadedSuite,
    targets: list[_Target],
    item: NumberedCase,
    run_id: str,
    skip: set[tuple[int, str]],
    pairwise: bool,
) -> list[Row]:
    case = item.case
    assertions = [*loaded.suite.default_assert, *case.assert_]
    outputs: dict[str, tuple[str, list[dict[str, str]]]] = {}

    async def one(target: _Target) -> Row | None:
        try:
            values = {k: v for k, v in case.vars.items() if k in target.spec.variables}
            messages = target.spec.render(values).messages
        except PromptRenderError as exc:
            return _errored(run_id, item, target.name, f"render failed: {exc.one_line()}")
        try:
            completion = await engine.call(
                target.provider, target.model, _request(messages, target.model)
            )
        except ProviderError as exc:
            return _errored(run_id, item, target.name, f"provider failed: {exc}")
        outputs[target.name] = (completion.text, messages)
        if (item.index, target.name) in skip:
            return None
        ctx = ScoreContext(
            vars=case.vars,
            expected=case.expected,
            latency_s=completion.latency_s,
            cost=completion.cost,
            folder=loaded.folder,
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
            if assertion.type.removeprefix("not-") in MODEL_GRADED:
                result, detail = await judges.grade(assertion, completion.text, messages, case)
            else:
                result, detail = (
                    run_scorer(assertion.type, completion.text, assertion.value, ctx),
                    {},
                )
            results.append((result, assertion.weight))
            scored.append({"type": assertion.type, **result.to_json(), **detail})
        return _result(run_id, item, target.name, completion, results, scored)

    async def guarded(target: _Target) -> Row | None:
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
                    item, _question(outputs[a][1]), outputs[a][0], outputs[b][0]
                )
            except (asyncio.CancelledError, KeyboardInterrupt, SystemExit, MemoryError):
                raise
            except Exception as exc:  # a judge error of this pair
                pair = judges.failed_pair(item, f"pairwise judging failed: {_describe(exc)}")
            pair["run_id"] = run_id
            rows.append(pair)
    return rows


def _scrubber(suite: Suite) -> Callable[[Row], Row]:
    """Rows with secrets removed before they are stored: errors lose anything shaped like a
    key (endpoints echo requests in error bodies); outputs and judge replies lose the values of
    the key variables (a model may repeat what it was sent)."""
    from llmops._redact import Redactor

    models = [t.model for t in suite.targets] + (suite.judge.judges if suite.judge else [])
    redactor = Redactor(m.api_key_env for m in models if m.api_key_env)

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
        "case_id": item.case.id, "vars": item.case.vars, "output": "", "passed": None,
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


async def _run(
    ws: _Stage,
    loaded: LoadedSuite,
    *,
    concurrency: int | None,
    no_cache: bool,
    resume: str | None,
    live: bool,
) -> EvalOutcome:
    suite = loaded.suite
    timeout = suite.timeout_s
    providers: dict[str, Provider] = {}
    for spec in [t.model for t in suite.targets] + (suite.judge.judges if suite.judge else []):
        providers.setdefault(
            _model_key(spec), make_provider(spec, models=ws.models, timeout_s=timeout)
        )
    targets = [
        _Target(t.name, _prompt_spec(ws, t), t.model, providers[_model_key(t.model)])
        for t in suite.targets
    ]
    total = _check_variables(loaded, targets)
    names = [t.name for t in targets]
    evals = ws.results
    run_id, skip = _open_run(ws, loaded, names, total, resume)
    stats = _Stats()
    cache = ResponseCache(ws.cache) if ws.cache is not None else None
    engine = _Engine(
        suite,
        concurrency=concurrency or suite.concurrency,
        cache=cache,
        read_cache=not no_cache,
        stats=stats,
    )
    judges = _Judges(ws, suite, engine, providers)
    pairwise = bool(suite.judge and suite.judge.mode == "pairwise")
    pending: list[Row] = []
    progress = LiveLine() if live else None

    def flush() -> None:
        if pending:
            evals.add_results(list(pending))
            pending.clear()

    cases = _todo(iter_cases(loaded), skip, names, pairwise)
    scrub = _scrubber(suite)

    async def worker() -> None:
        for item in cases:
            rows = await _case(engine, judges, loaded, targets, item, run_id, skip, pairwise)
            pending.extend(scrub(row) for row in rows)
            stats.done += 1
            for r in rows:
                if r["kind"] == "result" and r["passed"] is None:
                    stats.errors += 1
                    stats.saw_error(str(r["error"] or "error"))
            if len(pending) >= _FLUSH_ROWS:
                flush()
            if progress is not None:
                rate = stats.done / max(progress.elapsed, 1e-9)
                progress.show(
                    f"{stats.done}/{total} cases {bar(stats.done, total)}  {stats.errors} errors  "
                    f"{stats.calls} calls  {stats.hits} cached  {rate:.1f} cases/s",
                    force=stats.done == total,
                )

    try:
        await asyncio.gather(*(worker() for _ in range(concurrency or suite.concurrency)))
        flush()
    finally:
        for provider in providers.values():
            await provider.close()
        if cache is not None:
            cache.close()
        if progress is not None:
            progress.close()
    judge = suite.judge
    samples = bool(judge and (judge.epochs > 1 or len(judge.judges) > 1))
    summary = evals.summarize(run_id, names, judge_samples=samples)
    errors = sum(t["errors"] for t in summary["targets"])
    run = evals.finish(run_id, status="completed", summary=summary, cases=total, errors=errors)
    return EvalOutcome(
        run=run,
        seconds=time.perf_counter() - stats.started,
        calls=stats.calls,
        cache_hits=stats.hits,
        retries=stats.retries,
        error_kinds=stats.error_kinds(),
    )


def _open_run(
    ws: _Stage, loaded: LoadedSuite, names: list[str], total: int, resume: str | None
) -> tuple[str, set[tuple[int, str]]]:
    """A new run record, or the resumed one with the ``(case, target)`` pairs it finished."""
    evals = ws.results
    if resume:
        previous = evals.get(resume)
        if previous.suite_digest != loaded.digest:
            raise InputError(
                f"eval run {resume} ran a different suite (or cases file)",
                hint="resume with the same suite, or start a new run",
            )
        if previous.status == "completed":
            raise InputError(f"eval run {resume} already completed", hint="start a new run")
        evals.reopen(resume)
        return resume, evals.done(resume)
    from llmops.train.environment import git_state

    run_id = new_eval_id()
    evals.create(
        id=run_id,
        suite_name=loaded.name,
        suite_path=str(loaded.path) if loaded.path else "",
        suite_digest=loaded.digest,
        suite=loaded.suite.model_dump(mode="json", by_alias=True),
        targets=names,
        cases=total,
        environment={
            "llmops": _version(),
            "git": git_state(ws.root) if ws.root is not None else None,
        },
    )
    return run_id, set()


def _todo(
    items: Iterator[NumberedCase], skip: set[tuple[int, str]], names: list[str], pairwise: bool
) -> Iterator[NumberedCase]:
    """The cases a (resumed) run still has to do."""
    for item in items:
        finished = all((item.index, n) in skip for n in names)
        if pairwise:
            finished = finished and (item.index, "*pair*") in skip
        if not finished:
            yield item


def _version() -> str:
    from llmops._version import __version__

    return __version__
