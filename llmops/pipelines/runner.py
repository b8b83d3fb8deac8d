"""Running a pipeline: steps in order, each skipped when a completed step had its cache key.

A step's key is the SHA-256 of its kind, its parameters (with ``${step.output}`` references
resolved), the fingerprint of what it reads (prompt files, dataset content, the resolved recipe,
the base model's digest, the suite and cases, a Python step's source and input files) and the
outputs of the steps it needs. A key that matches a completed step of any earlier run reuses
that run's outputs, as DVC and Kubeflow Pipelines cache steps. A failed step stops the steps
that need it (``skipped``) and leaves the others' results usable; the next run resumes after
the last completed step because those keys match. Every run and step is a record
(:mod:`llmops.pipelines.records`); a run whose process died is marked ``interrupted`` by the
next one.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib
import inspect
import json
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from llmops.db.timestamps import utcnow
from llmops.errors import ConflictError, InputError, LLMOpsError
from llmops.pipelines.records import PipelineRunRecord
from llmops.pipelines.spec import (
    REFERENCE,
    Pipeline,
    StepSpec,
    load_pipeline,
    local_imports,
    local_module,
)
from llmops.pipelines.steps import KINDS, StepContext, StepFailed, content_digest

if TYPE_CHECKING:
    from llmops.workspace import Workspace

__all__ = ["run_pipeline", "step_key"]

Log = Callable[[str], None]


def _canonical(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)


def step_key(kind: str, params: Any, fingerprint: Any, upstream: dict[str, Any]) -> str:
    """The cache key of a step with these inputs."""
    material = {"kind": kind, "params": params, "fingerprint": fingerprint, "upstream": upstream}
    return "sha256:" + hashlib.sha256(_canonical(material).encode()).hexdigest()


def _lookup(outputs: dict[str, Any], path: str, ref: str) -> Any:
    value: Any = outputs
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            have = ", ".join(sorted(outputs)) or "none"
            raise InputError(f"${{{ref}.{path}}}: step {ref!r} has no output {path!r}",
                             hint=f"its outputs: {have}")  # fmt: skip
        value = value[part]
    return value


def resolve(value: Any, done: dict[str, dict[str, Any]]) -> Any:
    """``value`` with every ``${step.output}`` replaced by that step's output (a whole-string
    reference keeps the output's type; inside text it becomes text)."""
    if isinstance(value, str):
        whole = REFERENCE.fullmatch(value)
        if whole:
            return _lookup(done[whole.group(1)], whole.group(2), whole.group(1))
        return REFERENCE.sub(
            lambda m: str(_lookup(done[m.group(1)], m.group(2), m.group(1))), value
        )
    if isinstance(value, dict):
        return {k: resolve(v, done) for k, v in value.items()}
    if isinstance(value, list):
        return [resolve(v, done) for v in value]
    return value


@contextlib.contextmanager
def _on_path(folder: Path) -> Iterator[None]:
    sys.path.insert(0, str(folder))
    try:
        yield
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def _source_digest(fn: Callable[..., Any]) -> str:
    """The step function's identity: the whole source file it lives in (a helper or a
    constant it uses counts too), else its own source, else its name."""
    try:
        file = inspect.getsourcefile(fn)
        if file:
            return content_digest(Path(file))
    except (OSError, TypeError):
        pass
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = f"{fn.__module__}.{fn.__qualname__}"
    return "sha256:" + hashlib.sha256(source.encode()).hexdigest()


def _is_local(module: str, folder: Path) -> bool:
    """Whether an imported module's file lies in the pipeline's folder."""
    file = getattr(sys.modules.get(module), "__file__", None)
    return bool(file) and Path(str(file)).resolve().is_relative_to(folder.resolve())


def _function(step: StepSpec, folder: Path) -> Callable[..., Any]:
    module, _, name = str(step.python).partition(":")
    with _on_path(folder):
        if local_module(module, folder) is not None:  # the user's code: imported afresh, with
            # the folder's modules it imports, so that edits to any of them take effect
            fresh = {module, *local_imports(module, folder)}
            stale = [m for m in sys.modules
                     if any(m == f or m.startswith(f + ".") for f in fresh)]  # fmt: skip
            for loaded in stale:
                if loaded == module or _is_local(loaded, folder):
                    del sys.modules[loaded]
            importlib.invalidate_caches()
        fn = getattr(importlib.import_module(module), name, None)
    if not callable(fn):
        raise InputError(f"{step.python}: module {module!r} has no function {name!r}")
    return fn  # type: ignore[no-any-return]


class _Plan:
    """One step made ready to run: its resolved parameters, fingerprint and key."""

    def __init__(self, step: StepSpec, ctx: StepContext, done: dict[str, dict[str, Any]]):
        self.step = step
        self.ctx = ctx
        self.raw_params = resolve(step.params, done)
        upstream = {n: done[n] for n in step.needs}
        if step.step is not None:
            kind = KINDS[step.step]
            self.params: Any = kind.params.model_validate(self.raw_params)
            fingerprint = kind.fingerprint(ctx, self.params)
            self._run: Callable[[], Any] = lambda: kind.run(ctx, self.params)
        else:
            fn = _function(step, ctx.folder)
            fingerprint = {
                "source": _source_digest(fn),
                "inputs": {p: content_digest(ctx.path(p), ws=ctx.ws) for p in step.inputs},
            }
            module = str(step.python).partition(":")[0]
            imported = local_imports(module, ctx.folder) if local_module(module, ctx.folder) else {}
            if imported:  # the folder's modules the step's code imports count as its code
                fingerprint["imports"] = {m: content_digest(f) for m, f in imported.items()}
            self._run = lambda: fn(ctx, **self.raw_params)
        # a built-in kind reads upstream outputs only through its parameters (resolved above,
        # so in the key); a function gets them all (ctx.upstream), so they all count
        keyed = upstream if step.step is None or KINDS[step.step].upstream else {}
        self.inputs = {"params": self.raw_params, "fingerprint": fingerprint, "upstream": keyed}
        self.key = step_key(step.kind, self.raw_params, fingerprint, keyed)

    def still_holds(self, outputs: dict[str, Any]) -> bool:
        """Whether reused outputs still describe the world (a kind may check, e.g. that a
        server it started still answers)."""
        kind = KINDS.get(self.step.step or "")
        return kind is None or kind.valid is None or kind.valid(self.ctx, outputs)

    def run(self) -> dict[str, Any]:
        outputs = self._run()
        if outputs is None:
            return {}
        if not isinstance(outputs, dict):
            raise StepFailed(f"step {self.step.id!r} returned {type(outputs).__name__}, "
                             "not a mapping of outputs")  # fmt: skip
        try:
            return dict(json.loads(json.dumps(outputs, allow_nan=False)))
        except (TypeError, ValueError) as exc:
            raise StepFailed(f"step {self.step.id!r} outputs are not JSON: {exc}") from None


def _error(exc: BaseException) -> str:
    """One line (a record's error, a progress line, a table cell)."""
    text = exc.one_line() if isinstance(exc, LLMOpsError) else f"{type(exc).__name__}: {exc}"
    return " / ".join(line.strip() for line in text[:2000].splitlines() if line.strip())


@contextlib.contextmanager
def _lock(ws: Workspace, name: str) -> Iterator[None]:
    folder = ws.state_dir / "pipelines"
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / f"{name}.lock").open("a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise ConflictError(
                f"pipeline {name!r} is already running here ({holder})",
                hint="wait for it, or look at it with `llmops pipeline show latest`",
            ) from None
        f.truncate(0)
        f.write(f"pid {os.getpid()}")
        f.flush()
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _check_names(pipeline: Pipeline, names: list[str], option: str) -> None:
    for name in names:
        if name not in pipeline.order:
            raise InputError(f"{option} {name!r}: the pipeline has no such step",
                             hint=f"its steps: {', '.join(pipeline.order)}")  # fmt: skip


def run_pipeline(
    ws: Workspace,
    pipeline: Pipeline | str | os.PathLike[str],
    *,
    from_step: str | None = None,
    only: str | None = None,
    force: tuple[str, ...] = (),
    log: Log | None = None,
    engine: str = "local",
) -> PipelineRunRecord:
    """Run a pipeline's steps in order, reusing completed steps whose key matches.

    Args:
        from_step: Run this step and those after it that need it; earlier steps are taken from
            their last completed run.
        only: Run this step alone (the others it needs from their last completed run).
        force: Run these steps even when their key matches.
        log: Where progress lines go (default: nowhere).
        engine: ``local`` (this process) or ``prefect`` (a Prefect flow, a task per step).

    Raises:
        PipelineError: The pipeline file is invalid.
        InputError: An unknown step named, or an earlier step never completed.
        ConflictError: The same pipeline is running in another process here.
    """
    from llmops.pipelines.engines import ENGINES, _require

    if engine not in ENGINES:
        raise InputError(f"unknown engine {engine!r}", hint=f"choose one of {', '.join(ENGINES)}")
    if engine == "prefect":
        _require("prefect", "--engine prefect")
    say: Log = log or (lambda _line: None)
    p = pipeline if isinstance(pipeline, Pipeline) else load_pipeline(ws.resolve_path(pipeline))
    if from_step and only:
        raise InputError("give --from or --only, not both")
    _check_names(p, [from_step] if from_step is not None else [], "--from")
    _check_names(p, [only] if only is not None else [], "--only")
    _check_names(p, list(force), "--force")
    selected = set(p.order)
    if only:
        selected = {only}
    elif from_step:
        selected = p.downstream(from_step)
    for name in force:
        if name not in selected:
            hint = "force a step that --from/--only selects, or drop --force"
            raise InputError(f"--force {name!r}: that step does not run in this run", hint=hint)
    records = ws.pipelines
    reused: dict[str, tuple[str, str | None, dict[str, Any]]] = {}
    for name in set().union(*(p.upstream(s) for s in selected)) - selected:
        last = records.last_done(p.name, name, kind=p.step(name).kind)
        if last is None:
            raise InputError(
                f"step {name!r} ({p.step(name).kind}) has not completed in any run of pipeline "
                f"{p.name!r}",
                hint="run the whole pipeline once (without --from/--only)",
            )
        reused[name] = last
    options = {"from": from_step, "only": only, "force": list(force), "engine": engine}
    with _lock(ws, p.name):
        run_id = records._start(pipeline=p.name, path=str(p.path), digest=p.digest,
                                options=options,
                                steps=[(n, p.step(n).kind) for n in p.order])  # fmt: skip
        say(f"pipeline {p.name} run {run_id}: {len(p.order)} steps")
        try:
            if engine == "prefect":
                from llmops.pipelines.engines import with_prefect

                status = with_prefect(ws, p, lambda executor: _steps(
                    ws, p, run_id, selected, reused, set(force), say, executor))  # fmt: skip
            else:
                status = _steps(ws, p, run_id, selected, reused, set(force), say)
        except BaseException as exc:
            why = "stopped by the user" if isinstance(exc, KeyboardInterrupt) else _error(exc)
            records._interrupt(run_id, why or "interrupted")
            raise
        records._finish(run_id, status)
    return records.get(run_id)


def _prefixed(say: Log, name: str) -> Log:
    return lambda line: say(f"  {name}: {line}")


def _steps(
    ws: Workspace, p: Pipeline, run_id: str, selected: set[str],
    reused: dict[str, tuple[str, str | None, dict[str, Any]]], force: set[str], say: Log,
    executor: Executor | None = None,
) -> str:  # fmt: skip
    records = ws.pipelines
    done: dict[str, dict[str, Any]] = {}
    broken: dict[str, str] = {}  # step -> failed or skipped
    for name in p.order:
        if name in reused:
            source, key, kept = reused[name]
            done[name] = kept
            records._step(run_id, name, status="cached", key=key, outputs=kept,
                          cached_from=source, ended_at=utcnow())  # fmt: skip
            say(f"  {name}: cached (from {source})")
            continue
        if name not in selected:
            records._step(run_id, name, status="skipped", error="not selected")
            broken[name] = "skipped"
            continue
        bad = [n for n in p.step(name).needs if n in broken]
        if bad:
            why = ", ".join(f"{n} {broken[n]}" for n in bad)
            records._step(run_id, name, status="skipped", error=f"needs {why}")
            broken[name] = "skipped"
            say(f"  {name}: skipped ({why})")
            continue
        outputs = _run_step(ws, p, run_id, name, done, name in force, say, executor)
        if outputs is None:
            broken[name] = "failed"
        else:
            done[name] = outputs
    failed = [n for n, s in broken.items() if s == "failed"]
    return "failed" if failed else "completed"


@dataclass
class Outcome:
    """What executing a step gave: its outputs (None: it failed, see ``error``), the attempts
    made, and where reused outputs came from (a run id, or the engine's cache)."""

    outputs: dict[str, Any] | None
    error: str | None = None
    attempts: int = 0
    cached_from: str | None = None


Executor = Callable[["_Plan", bool, Callable[[], None]], Outcome]
"""``execute(plan, forced, started)``: reuse or run one step; calls ``started()`` just before
it really runs (the record says ``running`` from then)."""


def _run_step(
    ws: Workspace, p: Pipeline, run_id: str, name: str, done: dict[str, dict[str, Any]],
    forced: bool, say: Log, executor: Executor | None = None,
) -> dict[str, Any] | None:  # fmt: skip
    """One step whose needs completed: reused when its key matches, else run (with its
    retries); its outputs, or None when it failed (recorded either way)."""
    records = ws.pipelines
    step = p.step(name)
    started_at = time.perf_counter()
    upstream = {n: done[n] for n in step.needs}
    ctx = StepContext(ws=ws, folder=p.folder, name=name, upstream=upstream,
                      log=_prefixed(say, name))  # fmt: skip
    try:
        plan = _Plan(step, ctx, done)
    except Exception as exc:
        records._step(run_id, name, status="failed", error=_error(exc),
                      seconds=time.perf_counter() - started_at, ended_at=utcnow())  # fmt: skip
        say(f"  {name}: failed before running: {_error(exc)}")
        return None
    execute = executor or _in_process(ws, run_id, say)

    def started() -> None:
        records._step(run_id, name, status="running", key=plan.key, inputs=plan.inputs,
                      started_at=utcnow())  # fmt: skip
        say(f"  {name}: running")

    outcome = execute(plan, forced, started)
    seconds = time.perf_counter() - started_at
    if outcome.cached_from is not None:
        records._step(run_id, name, status="cached", key=plan.key, inputs=plan.inputs,
                      outputs=outcome.outputs, cached_from=outcome.cached_from,
                      seconds=seconds, ended_at=utcnow())  # fmt: skip
        say(f"  {name}: cached (key {plan.key[7:19]}, from {outcome.cached_from})")
        return outcome.outputs
    if outcome.outputs is None:
        records._step(run_id, name, status="failed", error=outcome.error, seconds=seconds,
                      attempts=outcome.attempts, ended_at=utcnow())  # fmt: skip
        say(f"  {name}: FAILED after {outcome.attempts} attempt(s): {outcome.error}")
        return None
    records._step(run_id, name, status="ran", outputs=outcome.outputs, seconds=seconds,
                  attempts=outcome.attempts, ended_at=utcnow(), error=None)  # fmt: skip
    say(f"  {name}: ran in {seconds:.1f} s")
    return outcome.outputs


def _in_process(ws: Workspace, run_id: str, say: Log) -> Executor:
    """Steps run in this process: reused from the records when a completed step had the key,
    else run with the step's retries."""
    records = ws.pipelines

    def execute(plan: _Plan, forced: bool, started: Callable[[], None]) -> Outcome:
        hit = None if forced else records.cached(plan.key)
        if hit is not None and plan.still_holds(hit[1]):
            return Outcome(hit[1], cached_from=hit[0])
        if hit is not None:
            say(f"  {plan.step.id}: its last outputs no longer hold (a server gone): rerunning")
        started()
        error: str | None = None
        attempts = 0
        while attempts <= plan.step.retries:
            attempts += 1
            records._step(run_id, plan.step.id, attempts=attempts)
            try:
                return Outcome(plan.run(), attempts=attempts)
            except (Exception, SystemExit) as exc:  # a step calling sys.exit fails, not the run
                error = _error(exc)
                if attempts <= plan.step.retries:
                    say(f"  {plan.step.id}: attempt {attempts} failed ({error}); trying again")
        return Outcome(None, error=error, attempts=attempts)

    return execute
