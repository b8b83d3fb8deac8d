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
import html
import os
import time
from collections.abc import Coroutine, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops._display import Display
from llmops._liveline import LiveLine, bar
from llmops.errors import InputError, LLMOpsError, PromptRenderError, SuiteError
from llmops.evals.cache import ResponseCache
from llmops.evals.cases import Row, Target, run_case, scrubber, suite_redactor
from llmops.evals.engine import Engine, RunStats
from llmops.evals.judging import (
    Judges,
    inline_spec,
    model_key,
)
from llmops.evals.providers import Provider, make_provider
from llmops.evals.records import EvalRunRecord, ModelIdentity, RunSummary
from llmops.evals.results import new_eval_id
from llmops.evals.selection import CaseSelection
from llmops.evals.suite import (
    LoadedSuite,
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

_FLUSH_ROWS = 256


@dataclass(slots=True, kw_only=True, repr=False)
class EvalOutcome(Display):
    """A finished (or resumed) run and how it went."""

    _repr_fields = ("run_id", "summary", "calls", "cache_hits", "seconds")

    run: EvalRunRecord
    seconds: float
    calls: int
    """Model calls actually made (not answered from the cache)."""
    cache_hits: int
    retries: int
    error_kinds: list[dict[str, Any]] = field(default_factory=list)
    """The first error of each kind in this session: ``{"kind", "count", "example"}``."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.run.run_id

    @property
    def summary(self) -> RunSummary | None:
        """The run's statistics."""
        return self.run.summary_model

    def _repr_html_(self) -> str:
        summary = self.summary
        head = f"<p><b>eval run {html.escape(self.run_id)}</b> ({self.run.status})</p>"
        return head + (summary._repr_html_() if summary is not None else "")

    @property
    def failed_targets(self) -> list[str]:
        """Targets of which every case errored (nothing was graded)."""
        summary = self.run.summary_model
        targets = summary.targets if summary is not None else []
        return [t.name for t in targets if t.cases and not t.graded]

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
    selection: CaseSelection | None = None,
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
        selection: Which cases to run (``--filter``, ``--limit``, ``--repeat``; default all).
        resume: Continue this run: finished cases are kept, the rest are run, with the
            options it started with (``no_cache`` and ``selection``; giving others is refused).
        live: Show progress (a line on stderr; an updating output in a notebook).

    Raises:
        SuiteError: The suite is invalid, or a case lacks a variable its prompt needs.
    """
    if concurrency is not None and concurrency < 1:
        raise InputError(f"concurrency must be at least 1, got {concurrency}")
    loaded = source if isinstance(source, LoadedSuite) else load_suite(source)
    if root is None and models is not None:
        root = models.root
    ws = _Stage(prompts, results, cache, models, root)
    options = _Options(no_cache, selection or CaseSelection())
    if resume is not None:
        if not resume.strip():
            raise InputError("--resume needs a run id", hint="see `llmops eval list`")
        resume = results.get(resume).run_id  # `latest` is the newest run
        options = _resumed_options(results, resume, options)
    return _run_sync(_run(ws, loaded, concurrency=concurrency, options=options, resume=resume,
                          live=live))  # fmt: skip


def _run_sync(coroutine: Coroutine[Any, Any, EvalOutcome]) -> EvalOutcome:
    """Run ``coroutine`` to the end, also where an event loop is already running (a Jupyter
    notebook runs one): then in a thread with a loop of its own."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coroutine)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="llmops-eval") as pool:
        return pool.submit(asyncio.run, coroutine).result()


@dataclass(frozen=True, slots=True)
class _Options:
    """What a run was asked for beyond its suite, recorded with it (and kept by a resume)."""

    no_cache: bool
    selection: CaseSelection

    def to_json(self) -> dict[str, Any]:
        return {"no_cache": self.no_cache, **self.selection.to_json()}


def _resumed_options(results: EvalRuns, run_id: str, asked: _Options) -> _Options:
    recorded = results.get(run_id).options
    original = _Options(bool(recorded.get("no_cache")), CaseSelection.from_json(recorded))
    if not asked.selection.everything and asked.selection != original.selection:
        raise InputError(
            f"eval run {run_id} runs the cases it started with"
            f" ({original.selection.to_json()}); --filter/--limit/--repeat cannot change them",
            hint="resume without them, or start a new run",
        )
    # --no-cache given now, or at the start: either way the answers are not read from the cache
    return _Options(original.no_cache or asked.no_cache, original.selection)


def _prompt_spec(ws: _Stage, target: Any) -> PromptSpec:
    if isinstance(target.prompt, str):
        return ws.prompts.get(target.prompt).spec
    return inline_spec(target.name, target.prompt)


def _check_variables(loaded: LoadedSuite, targets: list[Target], selection: CaseSelection) -> int:
    """Count the cases, raising one error naming every case whose variables a prompt refuses
    (missing, or of the wrong type for a registry prompt's declared variables)."""
    problems: list[str] = []
    count = 0
    for item in selection.apply(iter_cases(loaded)):
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
            "the suite has no cases (the cases file is empty)"
            if selection.everything
            else f"no case matches the selection {selection.to_json()}",
            path=str(loaded.path) if loaded.path else None,
        )
    return count


async def _run(
    ws: _Stage,
    loaded: LoadedSuite,
    *,
    concurrency: int | None,
    options: _Options,
    resume: str | None,
    live: bool,
) -> EvalOutcome:
    suite = loaded.suite
    timeout = suite.timeout_s
    providers: dict[str, Provider] = {}
    for spec in [t.model for t in suite.targets] + (suite.judge.judges if suite.judge else []):
        providers.setdefault(
            model_key(spec), make_provider(spec, models=ws.models, timeout_s=timeout)
        )
    targets = [
        Target(t.name, _prompt_spec(ws, t), t.model, providers[model_key(t.model)])
        for t in suite.targets
    ]
    total = _check_variables(loaded, targets, options.selection)
    names = [t.name for t in targets]
    evals = ws.results
    run_id, skip = _open_run(ws, loaded, names, total, resume, options)
    stats = RunStats()
    cache = ResponseCache(ws.cache) if ws.cache is not None else None
    redactor = suite_redactor(suite)
    engine = Engine(
        suite,
        concurrency=concurrency or suite.concurrency,
        cache=cache,
        read_cache=not options.no_cache,
        stats=stats,
        scrub=redactor.values,
    )
    judges = Judges(ws.prompts, suite.judge, engine, providers)
    pairwise = bool(suite.judge and suite.judge.mode == "pairwise")
    pending: list[Row] = []
    progress = LiveLine() if live else None

    def flush() -> None:
        if pending:
            evals._add_results(list(pending))
            pending.clear()

    cases = _todo(options.selection.apply(iter_cases(loaded)), skip, names, pairwise)
    scrub = scrubber(redactor)

    async def worker() -> None:
        for item in cases:
            rows = await run_case(engine, judges, loaded, targets, item, run_id, skip, pairwise)
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
    errors = sum(t.errors for t in summary.targets)
    run = evals._finish(run_id, status="completed", summary=summary, cases=total, errors=errors)
    return EvalOutcome(
        run=run,
        seconds=time.perf_counter() - stats.started,
        calls=stats.calls,
        cache_hits=stats.hits,
        retries=stats.retries,
        error_kinds=stats.error_kinds(),
    )


def _open_run(
    ws: _Stage,
    loaded: LoadedSuite,
    names: list[str],
    total: int,
    resume: str | None,
    options: _Options,
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
        evals._reopen(resume)
        return resume, evals.done(resume)
    from llmops.train.environment import git_state

    run_id = new_eval_id()
    evals._create(
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
            "models": _identities(ws, loaded.suite),
            # The prompt versions the targets rendered (a label resolved now may move later).
            "prompts": {
                t.name: ws.prompts.get(t.prompt).ref
                for t in loaded.suite.targets
                if isinstance(t.prompt, str)
            },
            "options": options.to_json(),
        },
    )
    return run_id, set()


def _identities(ws: _Stage, suite: Suite) -> dict[str, dict[str, Any]]:
    """Per target: exactly which model it used (digests of local models and adapters), the
    evidence a promotion gate matches on."""
    out = {}
    for target in suite.targets:
        spec = target.model
        found: dict[str, Any] = {"provider": spec.provider, "name": spec.name}
        if spec.api_base:
            found["api_base"] = spec.api_base
        if spec.provider == "transformers" and ws.models is not None:
            for key, ref in (("", spec.name), ("adapter_", spec.adapter)):
                if not ref:
                    continue
                if key:
                    found["adapter"] = ref
                try:
                    source = ws.models.source(ref)
                except LLMOpsError:
                    continue  # reported per case when the model loads
                found[f"{key}ref"], found[f"{key}digest"] = source.label, source.digest
        if target.model_version and ws.models is not None:
            try:
                declared = ws.models.source(target.model_version)
            except LLMOpsError as exc:
                raise SuiteError(
                    f"target {target.name!r}: model_version {target.model_version!r} is not a"
                    f" stored model version ({exc.message})",
                    hint="name a version as name@version (see `llmops models list`)",
                ) from None
            found["model_version"] = declared.label
            found["model_version_digest"] = declared.digest
        out[target.name] = ModelIdentity.model_validate(found).to_json()
    return out


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
