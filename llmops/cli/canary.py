"""``llmops canary ...``: progressive rollouts judged on live traffic, rolled back or promoted
by the gateway's controller (or by hand)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
import yaml

from llmops.cli._common import JsonOpt, emit_json, print_table, table, workspace

if TYPE_CHECKING:
    from llmops.serve.canary import CanaryStatus

app = typer.Typer(
    help="Canaries: step a candidate's weight up while it holds up on live traffic.",
    no_args_is_help=True,
)

LogicalArg = Annotated[str, typer.Argument(help="Logical model name (it needs a traffic policy).")]


def _step(status: CanaryStatus) -> str:
    return "shadow" if status.step < 0 else f"{status.step + 1}/{len(status.steps)}"


def _quality_line(quality: dict[str, Any]) -> str:
    w = quality["win_rate"]
    if w["estimate"] is None:
        return f"  judge: no pairs judged yet ({quality['pending']} pending)"
    consistency = quality["position_consistency"]
    return (
        f"  judge: win rate {w['estimate']:.2f} ({w['low']:.2f} .. {w['high']:.2f}, min"
        f" {quality['min_win_rate']:g}) over {quality['judged']} pairs"
        f" ({quality['wins']} won, {quality['ties']} tied, {quality['losses']} lost;"
        f" position-consistent {consistency:.0%}): {quality['verdict']}"
    )


def _print(status: CanaryStatus) -> None:
    steps = ",".join(f"{w:g}" for w in status.steps)
    arms = list((status.analysis.get("bandit") or {}).get("arms", {}))
    candidate = f"bandit over {', '.join(arms)}" if arms else status.candidate
    typer.echo(
        f"{status.logical}: {status.state}  {candidate} vs {status.stable}"
        f"  step {_step(status)} ({steps})  weight {status.weight:g}%"
    )
    if status.reason:
        typer.echo(f"  {status.reason}")
    err = status.analysis["error_rate"]["difference"]
    typer.echo(
        f"  error-rate increase {err['low']:+.2%} .. {err['high']:+.2%}"
        f" (max {status.spec['max_error_rate_increase']:.2%})"
        f"; ready to advance: {'yes' if status.analysis['ready'] else 'no'}"
    )
    if status.analysis.get("quality") and not status.analysis.get("bandit"):
        typer.echo(_quality_line(status.analysis["quality"]))
    for ref, arm in (status.analysis.get("bandit") or {}).get("arms", {}).items():
        typer.echo(
            f"  bandit {ref}: share {arm['share']:.0%}, P(best) {arm['p_best']:.2f},"
            f" {arm['rewards']} rewards (mean {arm['reward_mean']}), {arm['requests']} requests"
            + (f"; dropped: {arm['dropped']}" if arm["dropped"] else "")
        )
    rows = table("arm", "requests", "errors", "p50 ms", "p95 ms", keep=("arm",))
    for name in ("stable", "candidate", "shadow", "cohort"):
        s = status.arms.get(name)
        if s is not None:
            rows.add_row(
                name, str(s.requests), str(s.errors), str(s.p50_ms or "-"), str(s.p95_ms or "-")
            )
    print_table(rows)
    for d in status.decisions[-8:]:
        at = d.at.strftime("%H:%M:%S") if d.at else ""
        typer.echo(f"  {at} {d.action:<9} {d.reason}")


def _steps(text: str) -> list[float]:
    from llmops.errors import InputError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise InputError(
            f"--steps {text!r} is not a comma-separated list of weights",
            hint="e.g. --steps 5,25,50,100",
        ) from None


def _judge_model(text: str) -> dict[str, Any]:
    from llmops.errors import InputError

    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputError(
            f"--judge-model is not JSON ({exc.msg} at character {exc.pos})",
            hint='e.g. --judge-model \'{"provider": "openai", "name": "judge",'
            ' "api_base": "http://127.0.0.1:8000/v1"}\'',
        ) from None
    if not isinstance(value, dict):
        raise InputError(
            "--judge-model must be a JSON object (an eval model spec)",
            hint='e.g. {"provider": "openai", "name": "judge", "api_base": "http://..."}',
        )
    return value


def _spec_file(path: Path) -> dict[str, Any]:
    from llmops.errors import InputError

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise InputError(f"cannot read canary spec {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise InputError(f"canary spec {path} is not UTF-8 text") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (line {mark.line + 1})" if mark is not None else ""
        raise InputError(f"canary spec {path} is not valid YAML{where}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise InputError(f"canary spec {path} must be a mapping of spec fields")
    if isinstance(data.get("canary"), dict):  # fields under a canary: key, or beside it
        data = {**{k: v for k, v in data.items() if k != "canary"}, **data["canary"]}
    spec = {str(k).replace("-", "_"): v for k, v in data.items()}
    flags = [k for k, v in spec.items() if isinstance(v, bool) and k not in ("judge_model",)]
    if flags:
        raise InputError(f"canary spec {path}: {', '.join(flags)} must be a number, not true/false")
    if "candidate" in spec or "candidates" in spec:
        raise InputError(
            f"canary spec {path} names candidates: they are given on the command line",
            hint="remove them from the file and pass --candidate REF (repeat it for a bandit)",
        )
    return spec


@app.command("start")
def start(
    logical: LogicalArg,
    candidate: Annotated[
        list[str],
        typer.Option("--candidate", help="The version to roll out (repeat for a bandit)."),
    ],
    spec_file: Annotated[
        Path | None,
        typer.Option("--spec", help="YAML of spec fields (flags given here override it)."),
    ] = None,
    steps: Annotated[
        str | None, typer.Option("--steps", help="Weights, in percent (default 5,25,50,100).")
    ] = None,
    min_requests: Annotated[
        int | None, typer.Option("--min-requests", help="Candidate requests per step (200).")
    ] = None,
    min_seconds: Annotated[
        float | None, typer.Option("--min-seconds", help="Seconds per step (60).")
    ] = None,
    min_minutes: Annotated[
        float | None,
        typer.Option("--min-minutes", help="Minutes per step (wins over --min-seconds)."),
    ] = None,
    max_error_rate_increase: Annotated[
        float | None,
        typer.Option(
            "--max-error-rate-increase", help="Roll back above this increase (0.02: 2 points)."
        ),
    ] = None,
    max_p95_increase: Annotated[
        float | None,
        typer.Option(
            "--max-p95-increase",
            help="Roll back when over 5% of candidate requests are slower than stable p95 x"
            " (1 + this) (0.5).",
        ),
    ] = None,
    min_p95_increase_ms: Annotated[
        float | None,
        typer.Option(
            "--min-p95-increase-ms", help="Latency differences under this never count (5)."
        ),
    ] = None,
    min_stable_requests: Annotated[
        int | None,
        typer.Option("--min-stable-requests", help="Stable requests before comparing (20)."),
    ] = None,
    alpha: Annotated[
        float | None, typer.Option("--alpha", help="False-alarm rate of the tests (0.05).")
    ] = None,
    judge_model: Annotated[
        str | None,
        typer.Option("--judge-model", help="Pairwise judge: an eval model spec as JSON."),
    ] = None,
    judge_rubric: Annotated[
        str | None, typer.Option("--judge-rubric", help="What the judge compares on.")
    ] = None,
    judge_method: Annotated[
        str | None,
        typer.Option(
            "--judge-method",
            help="generate (default) or likelihood: the verdict words' probabilities.",
        ),
    ] = None,
    min_win_rate: Annotated[
        float | None,
        typer.Option("--min-win-rate", help="Roll back below this judged win rate (0.45)."),
    ] = None,
    min_judged: Annotated[
        int | None,
        typer.Option(
            "--min-judged", help="Judged pairs, over the whole canary, before a step passes (30)."
        ),
    ] = None,
    judge_sample: Annotated[
        float | None,
        typer.Option("--judge-sample", help="Share of requests mirrored for judging (0.2)."),
    ] = None,
    shadow_first: Annotated[
        int | None,
        typer.Option("--shadow-first", help="Judged shadow pairs before any live weight (0: off)."),
    ] = None,
    max_feedback_drop: Annotated[
        float | None,
        typer.Option(
            "--max-feedback-drop",
            help="Roll back on a mean feedback drop above this (off: reported only).",
        ),
    ] = None,
    strategy: Annotated[
        str | None,
        typer.Option(
            "--strategy", help="steps (default), or thompson: a bandit over the candidates."
        ),
    ] = None,
    reward: Annotated[
        str | None, typer.Option("--reward", help="A bandit's reward: judge (default) or feedback.")
    ] = None,
    floor: Annotated[
        float | None, typer.Option("--floor", help="A bandit's least share per candidate (0.1).")
    ] = None,
    win_probability: Annotated[
        float | None,
        typer.Option("--win-probability", help="A bandit's winner: P(best) at least (0.95)."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Start a canary: the candidate takes the first step's weight now (or collects judged
    shadow pairs first); the gateway's controller advances, holds, rolls back or promotes it."""
    spec = _spec_file(spec_file) if spec_file is not None else {}
    flags: dict[str, Any] = {
        "steps": _steps(steps) if steps is not None else None,
        "min_requests": min_requests,
        "min_seconds": min_minutes * 60 if min_minutes is not None else min_seconds,
        "max_error_rate_increase": max_error_rate_increase,
        "max_p95_increase": max_p95_increase,
        "min_p95_increase_ms": min_p95_increase_ms,
        "min_stable_requests": min_stable_requests,
        "alpha": alpha,
        "judge_model": _judge_model(judge_model) if judge_model is not None else None,
        "judge_rubric": judge_rubric,
        "judge_method": judge_method,
        "min_win_rate": min_win_rate,
        "min_judged": min_judged,
        "judge_sample": judge_sample,
        "shadow_first": shadow_first,
        "max_feedback_drop": max_feedback_drop,
        "strategy": strategy,
        "reward": reward,
        "floor": floor,
        "win_probability": win_probability,
    }
    spec.update({k: v for k, v in flags.items() if v is not None})
    refs = [r.strip() for given in candidate for r in given.split(",") if r.strip()]
    if not refs:
        from llmops.errors import InputError

        raise InputError("--candidate names no model version", hint="e.g. --candidate name@7")
    status = workspace().serving.canaries.start(
        logical, candidate=refs[0] if len(refs) == 1 else refs, **spec
    )
    if json_out:
        emit_json(status.to_json())
        return
    _print(status)


@app.command("judge")
def judge(
    logical: LogicalArg,
    limit: Annotated[int, typer.Option("--limit", min=1, help="Most pairs to judge now.")] = 32,
    json_out: JsonOpt = False,
) -> None:
    """Judge the canary's pending shadow pairs now (the gateway does it on its own)."""
    canaries = workspace().serving.canaries
    judged = canaries.judge(logical, limit=limit)
    quality = canaries.status(logical).analysis["quality"]
    if json_out:
        emit_json({"judged": judged, "quality": quality})
        return
    typer.echo(f"judged {judged} pairs")
    if quality:
        typer.echo(_quality_line(quality))


@app.command("status")
def status(logical: LogicalArg, json_out: JsonOpt = False) -> None:
    """State, step, weight, per-arm numbers on this step, and the decisions with reasons."""
    result = workspace().serving.canaries.status(logical)
    if json_out:
        emit_json(result.to_json())
        return
    _print(result)


@app.command("list")
def list_canaries(json_out: JsonOpt = False) -> None:
    """Every canary, live ones first."""
    canaries = workspace().serving.canaries.list()
    if json_out:
        emit_json([c.to_json() for c in canaries])
        return
    rows = table("logical", "state", "candidate", "step", "weight", keep=("logical",))
    for c in canaries:
        rows.add_row(c.logical, c.state, c.candidate, _step(c), f"{c.weight:g}%")
    print_table(rows)


def _simple(action: str, logical: str, json_out: bool, **kwargs: str) -> None:
    canaries = workspace().serving.canaries
    result = getattr(canaries, action)(logical, **kwargs)
    if json_out:
        emit_json(result.to_json())
        return
    _print(result)


@app.command("pause")
def pause(logical: LogicalArg, json_out: JsonOpt = False) -> None:
    """Stop advancing (a clear breach still rolls it back)."""
    _simple("pause", logical, json_out)


@app.command("resume")
def resume(logical: LogicalArg, json_out: JsonOpt = False) -> None:
    """Let a paused canary advance again."""
    _simple("resume", logical, json_out)


@app.command("advance")
def advance(logical: LogicalArg, json_out: JsonOpt = False) -> None:
    """Go to the next step now, whatever the numbers say."""
    _simple("advance", logical, json_out)


@app.command("rollback")
def rollback(
    logical: LogicalArg,
    reason: Annotated[str, typer.Option("--reason", "-m", help="Why.")] = "rolled back by hand",
    json_out: JsonOpt = False,
) -> None:
    """Everything to stable at once; the canary ends rolled back (the evidence stays)."""
    _simple("rollback", logical, json_out, reason=reason)


@app.command("promote")
def promote(logical: LogicalArg, json_out: JsonOpt = False) -> None:
    """Promote the candidate now, through the model's promotion policy (exit 1 while it waits
    for approvals)."""
    result = workspace().serving.canaries.promote(logical)
    if json_out:
        emit_json(result.to_json())
    else:
        _print(result)
    if result.state != "promoted":
        raise typer.Exit(1)


@app.command("export")
def export(
    logical: LogicalArg,
    format: Annotated[
        str,
        typer.Option(
            "--format",
            help="argo (an AnalysisTemplate), flagger (a Canary with a webhook check) or llm-d"
            " (the split at the canary's current weight).",
        ),
    ] = "argo",
    gateway_url: Annotated[
        str, typer.Option("--gateway-url", help="Where Argo or Flagger reach the gateway.")
    ] = "http://llmops-gateway:8080",
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Kubernetes namespace.")
    ] = None,
    api_key_secret: Annotated[
        str | None,
        typer.Option("--api-key-secret", help="SECRET/KEY: a Secret holding a gateway API key."),
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """The canary for rollout tools: an Argo Rollouts AnalysisTemplate whose web metrics call
    the gateway's /canary/LOGICAL/analysis, a Flagger Canary whose webhook calls
    /canary/LOGICAL/check, or the llm-d split at the canary's current weight."""
    from llmops.errors import InputError
    from llmops.serve.backends import check_url
    from llmops.serve.export import argo_analysis, check_k8s_name, flagger_canary, to_yaml

    if format not in ("argo", "flagger", "llm-d"):
        raise InputError(
            f"unknown export format {format!r}", hint="use --format argo, flagger or llm-d"
        )
    ws = workspace()
    ws.serving.canaries.row(logical)  # a canary must exist
    if format == "llm-d":
        typer.echo(ws.serving.export(logical, format="llm-d", namespace=namespace), nl=False)
        return
    if namespace is not None:
        check_k8s_name(namespace, what="--namespace")
    secret = None
    if api_key_secret is not None:
        name, _, key = api_key_secret.partition("/")
        if not key:
            raise InputError(f"--api-key-secret {api_key_secret!r} is not SECRET/KEY",
                             hint="e.g. --api-key-secret llmops-gateway/api-key")  # fmt: skip
        secret = (check_k8s_name(name, what="--api-key-secret"), key)
    base = check_url(gateway_url).removesuffix("/v1")
    manifest: Any
    if format == "flagger":
        if secret is not None:
            raise InputError(
                "Flagger webhooks send no headers, so --api-key-secret cannot apply",
                hint="route the check through something that adds the key, or use --format argo",
            )
        manifest = flagger_canary(logical, gateway_url=base, namespace=namespace)
    else:
        manifest = argo_analysis(logical, gateway_url=base, namespace=namespace,
                                 api_key_secret=secret)  # fmt: skip
    if json_out:
        emit_json(manifest.model_dump(exclude_none=True))
        return
    typer.echo(to_yaml(manifest), nl=False)
