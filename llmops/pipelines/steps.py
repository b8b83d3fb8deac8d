"""The built-in step kinds: what each takes, what its cache key is made of, and what it does.

Each kind has a parameter model (validated with the pipeline), ``files`` (paths that must
exist), ``fingerprint`` (cheap, before running: the identity of everything the step reads
besides its parameters and upstream outputs) and ``run`` (does the work through the Python
API and returns JSON outputs that later steps reference as ``${step.output}``).

- ``prompts``: push the prompt files (default ``prompts/``) and move labels; keyed on the files.
- ``data``: the data gate on a dataset file; keyed on its content (and the tokenizer's files).
- ``train``: a recipe; keyed on the resolved recipe, the dataset's content, the base model.
- ``eval``: a suite; keyed on the suite and cases, the prompts and models its targets resolve to.
- ``promote``: move an alias through the model's policy; keyed on its parameters and upstream.
- ``serve`` and ``canary`` (:mod:`llmops.pipelines.serving_steps`): a backend for the versions
  named, and a canary rollout behind the gateway with synthetic traffic.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from llmops.errors import InputError, LLMOpsError

if TYPE_CHECKING:
    from llmops.workspace import Workspace

__all__ = ["KINDS", "Kind", "StepContext", "StepFailed", "content_digest"]

Loc = tuple[str | int, ...]


class StepFailed(LLMOpsError):
    """A step ran and its check did not hold (the data gate, an eval threshold, a policy)."""

    exit_code = 1


@dataclass
class StepContext:
    """What a step function gets: the workspace, where the pipeline lives, its name, and the
    outputs of the steps it needs."""

    ws: Workspace
    folder: Path
    name: str
    upstream: dict[str, dict[str, Any]] = field(default_factory=dict)
    log: Callable[[str], None] = print

    def path(self, value: str) -> Path:
        """A path from the pipeline's folder (absolute ones as they are)."""
        p = Path(value)
        return p if p.is_absolute() else self.folder / p


def content_digest(path: Path, *, ws: Workspace | None = None) -> str:
    """``blake3:`` of a file's bytes, or of a folder's manifest (names and contents)."""
    from llmops.artifacts.models import bytes_digest, folder_digest

    if path.is_dir():
        return folder_digest(path, cache=ws.artifacts.hash_cache if ws is not None else None)
    return bytes_digest(path)


class _Params(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class Kind:
    params: type[_Params]
    fingerprint: Callable[[StepContext, Any], dict[str, Any]]
    run: Callable[[StepContext, Any], dict[str, Any]]
    files: Callable[[Any], list[tuple[Loc, str]]] = lambda p: []
    valid: Callable[[StepContext, dict[str, Any]], bool] | None = None
    """Whether a completed step's outputs still hold (a server still answering); a cached
    step whose outputs no longer hold runs again."""
    folders: bool = False
    """Its ``files`` may be folders."""
    upstream: bool = False
    """Keyed on the outputs of the steps it needs too, not only on what its parameters take
    from them (a promotion decides on evidence those steps produced)."""


# -- prompts -------------------------------------------------------------------------------


class PromptsParams(_Params):
    paths: list[str] = Field(default_factory=lambda: ["prompts"])
    labels: dict[str, str] = Field(default_factory=dict)
    """``{prompt: label}``: point the label at the version just pushed."""
    message: str = "pushed by a pipeline"


def _prompts_fingerprint(ctx: StepContext, p: PromptsParams) -> dict[str, Any]:
    return {"files": {path: content_digest(ctx.path(path), ws=ctx.ws) for path in p.paths}}


def _prompts_run(ctx: StepContext, p: PromptsParams) -> dict[str, Any]:
    pushed = ctx.ws.prompts.push_files([ctx.path(x) for x in p.paths], message=p.message)
    versions = {r.name: f"{r.name}@{r.version}" for r in pushed}
    for name, label in p.labels.items():
        if name not in versions:
            raise InputError(f"labels names prompt {name!r}, which was not pushed",
                             hint=f"pushed: {', '.join(sorted(versions)) or 'none'}")  # fmt: skip
        ctx.ws.prompts.label(versions[name], label)
    created = sum(r.created for r in pushed)
    ctx.log(f"{len(pushed)} prompt(s), {created} new version(s)")
    return {"versions": versions, "created": created}


# -- data ----------------------------------------------------------------------------------


class DataParams(_Params):
    path: str
    format: Literal["chat", "prompt-completion", "preference"] = "chat"
    tokenizer: str | None = None
    """A model folder or artifact reference: checks the chat template and token lengths."""
    max_length: int | None = Field(default=None, ge=1)
    eval_path: str | None = None


def _data_files(p: DataParams) -> list[tuple[Loc, str]]:
    files: list[tuple[Loc, str]] = [(("path",), p.path)]
    return [*files, (("eval_path",), p.eval_path)] if p.eval_path else files


def _tokenizer_identity(ctx: StepContext, ref: str | None) -> str | None:
    if ref is None:
        return None
    local = ctx.path(ref)
    return content_digest(local, ws=ctx.ws) if local.exists() else ctx.ws.model_source(ref).digest


def _data_fingerprint(ctx: StepContext, p: DataParams) -> dict[str, Any]:
    out = {"dataset": content_digest(ctx.path(p.path)),
           "tokenizer": _tokenizer_identity(ctx, p.tokenizer)}  # fmt: skip
    if p.eval_path:
        out["eval"] = content_digest(ctx.path(p.eval_path))
    return out


def _data_run(ctx: StepContext, p: DataParams) -> dict[str, Any]:
    from llmops.data.gate import validate_dataset

    tokenizer = None
    if p.tokenizer is not None:
        from transformers import AutoTokenizer

        local = ctx.path(p.tokenizer)
        folder = local if local.exists() else ctx.ws.model_dir(ctx.ws.model_source(p.tokenizer))
        tokenizer = AutoTokenizer.from_pretrained(str(folder))
    report = validate_dataset(
        ctx.path(p.path), p.format, tokenizer=tokenizer, max_length=p.max_length,
        eval_path=ctx.path(p.eval_path) if p.eval_path else None,
    )  # fmt: skip
    ctx.log(f"{report.rows} rows, data gate {'passed' if report.ok else 'FAILED'}")
    report.raise_if_failed()
    return {"rows": report.rows, "fingerprint": report.fingerprint,
            "warnings": len(report.findings)}  # fmt: skip


# -- train ---------------------------------------------------------------------------------


class TrainParams(_Params):
    recipe: str
    set: dict[str, Any] = Field(default_factory=dict)
    """Recipe overrides, as ``--set``: ``{training.max_steps: 20}``."""


def _train_fingerprint(ctx: StepContext, p: TrainParams) -> dict[str, Any]:
    from llmops.train.recipe import load_recipe

    recipe = load_recipe(ctx.path(p.recipe), overrides=dict(p.set))
    data = recipe.dataset
    dataset = (
        content_digest(ctx.ws.resolve_path(data.path))
        if data.path
        else ctx.ws.artifacts.get(str(data.artifact)).digest
    )
    return {"recipe": recipe.digest(), "dataset": dataset,
            "base_model": ctx.ws.model_source(recipe.base_model).digest}  # fmt: skip


def _train_run(ctx: StepContext, p: TrainParams) -> dict[str, Any]:
    result = ctx.ws.train(ctx.path(p.recipe), overrides=dict(p.set))
    ctx.log(f"run {result.run_id}: final loss {result.final_loss}, adapter {result.adapter_ref}")
    return {"run_id": result.run_id, "adapter": result.adapter_ref,
            "final_loss": result.final_loss}  # fmt: skip


# -- eval ----------------------------------------------------------------------------------


class EvalParams(_Params):
    suite: str
    adapter: str | None = None
    """For the targets whose model has an adapter: this version instead (usually
    ``${train.adapter}``), so the run tests what the pipeline trained, not the latest."""
    min_pass_rate: dict[str, float] = Field(default_factory=dict)
    """``{target: rate}``: the step fails when a target's pass rate is below its rate."""
    max_errors: int | None = Field(default=None, ge=0)


def _suite(ctx: StepContext, p: EvalParams) -> Any:
    """The suite, with ``adapter`` put in place of its targets' adapters."""
    import dataclasses
    import hashlib

    from llmops.evals.suite import load_suite

    loaded = load_suite(ctx.path(p.suite))
    if p.adapter is None:
        return loaded
    targets = [
        t.model_copy(update={"model": t.model.model_copy(update={"adapter": p.adapter})})
        if t.model.adapter else t
        for t in loaded.suite.targets
    ]  # fmt: skip
    suite = loaded.suite.model_copy(update={"targets": targets})
    digest = hashlib.sha256(f"{loaded.digest}\nadapter={p.adapter}".encode()).hexdigest()
    return dataclasses.replace(loaded, suite=suite, digest=f"sha256:{digest}")


def _eval_fingerprint(ctx: StepContext, p: EvalParams) -> dict[str, Any]:
    loaded = _suite(ctx, p)
    targets: dict[str, Any] = {}
    for t in loaded.suite.targets:
        ident: dict[str, Any] = {}
        if isinstance(t.prompt, str):
            ident["prompt"] = ctx.ws.prompts.get(t.prompt).digest
        for role, ref in (("model", t.model.name), ("adapter", t.model.adapter)):
            if ref and t.model.provider == "transformers":
                ident[role] = ctx.ws.model_source(ref).digest
        targets[t.name] = ident
    return {"suite": loaded.digest, "targets": targets}


def _eval_run(ctx: StepContext, p: EvalParams) -> dict[str, Any]:
    outcome = ctx.ws.evaluate(_suite(ctx, p))
    run = outcome.run
    summary = run.summary_model
    rates = {t.name: t.pass_rate or 0.0 for t in summary.targets} if summary else {}
    errors = sum(t.errors for t in summary.targets) if summary else 0
    ctx.log(f"run {run.run_id}: " + ", ".join(f"{k} {v:.0%}" for k, v in rates.items()))
    judged = _judge_lines(summary) if summary else {}
    for line in judged.pop("lines", []):
        ctx.log(line)
    low = [f"{k} {rates.get(k, 0.0):.0%} < {v:.0%}" for k, v in p.min_pass_rate.items()
           if rates.get(k, 0.0) < v]  # fmt: skip
    if low or (p.max_errors is not None and errors > p.max_errors):
        why = "; ".join(low) or f"{errors} errored case(s) > {p.max_errors}"
        raise StepFailed(f"eval run {run.run_id} did not pass: {why}",
                         hint=f"llmops eval show {run.run_id}")  # fmt: skip
    return {"run_id": run.run_id, "pass_rate": rates, "errors": errors, **judged}


WEAK_KAPPA = 0.4
"""Below this Cohen's kappa against people's labels, a judge is called weak (Landis and
Koch's "moderate" agreement starts at 0.41)."""


def _judge_lines(summary: Any) -> dict[str, Any]:
    """What the run's judge said and how far people agree with it: log lines and outputs."""
    out: dict[str, Any] = {"lines": []}
    if summary.pairwise is not None:
        pw = summary.pairwise
        wins = ", ".join(f"{k} {v}" for k, v in pw.wins.items())
        consistency = summary.position_consistency
        out["lines"].append(
            f"judge (pairwise): wins {wins}, ties {pw.ties}, judge errors {pw.judge_errors},"
            f" position consistency {'n/a' if consistency is None else f'{consistency:.2f}'}"
        )
        out["judge_wins"] = dict(pw.wins)
    for kind, cal in (summary.calibration or {}).items():
        kappa = cal.get("kappa")
        known = isinstance(kappa, int | float) and math.isfinite(kappa)
        agree = round((cal.get("agreement") or 0) * cal["n"])
        line = f"judge vs human labels ({kind}): agrees on {agree} of {cal['n']}, " + (
            f"Cohen's kappa {kappa:.2f}" if known else "Cohen's kappa undefined"
        )
        if not known or kappa < WEAK_KAPPA:
            line += (
                f" -- a weak judge (kappa < {WEAK_KAPPA}): do not gate on its verdicts;"
                " calibrate a stronger one against these labels first"
            )
        out["lines"].append(line)
        out[f"judge_kappa_{kind}"] = kappa
    return out


# -- promote -------------------------------------------------------------------------------


class PromoteParams(_Params):
    model: str
    """The version to promote, usually ``${train.adapter}``."""
    alias: str
    required: bool = True
    """Fail the step when the policy refuses (else record the refusal and go on)."""


def _promote_fingerprint(ctx: StepContext, p: PromoteParams) -> dict[str, Any]:
    version = ctx.ws.models.get(p.model)
    return {"version": version.digest}


def _promote_run(ctx: StepContext, p: PromoteParams) -> dict[str, Any]:
    verdict = ctx.ws.models.promote(p.model, p.alias)
    unmet = [str(c.name) for c in verdict.conditions if not c.ok]
    ctx.log(f"{verdict.ref} -> {p.alias}: " + ("promoted" if verdict.promoted else
                                              f"refused ({', '.join(unmet)})"))  # fmt: skip
    if not verdict.promoted and p.required:
        hint = f"llmops models promote {verdict.ref} {p.alias} --dry-run"
        raise StepFailed(f"{verdict.ref} was not promoted to {p.alias}: {', '.join(unmet)}",
                         hint=hint)  # fmt: skip
    return {"ref": verdict.ref, "alias": p.alias, "promoted": verdict.promoted, "unmet": unmet}


KINDS: dict[str, Kind] = {
    "prompts": Kind(PromptsParams, _prompts_fingerprint, _prompts_run,
                    lambda p: [(("paths", i), x) for i, x in enumerate(p.paths)], folders=True),
    "data": Kind(DataParams, _data_fingerprint, _data_run, _data_files),
    "train": Kind(TrainParams, _train_fingerprint, _train_run, lambda p: [(("recipe",), p.recipe)]),
    "eval": Kind(EvalParams, _eval_fingerprint, _eval_run, lambda p: [(("suite",), p.suite)]),
    "promote": Kind(PromoteParams, _promote_fingerprint, _promote_run, upstream=True),
}  # fmt: skip


def _serving_kinds() -> None:
    from llmops.pipelines.serving_steps import SERVING_KINDS

    KINDS.update(SERVING_KINDS)


_serving_kinds()
