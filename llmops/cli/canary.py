"""``llmops canary ...``: progressive rollouts judged on live traffic, rolled back or promoted
by the gateway's controller (or by hand)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from llmops.cli._common import JsonOpt, emit_json, print_table, table, workspace

if TYPE_CHECKING:
    from llmops.serve.canary import CanaryStatus

app = typer.Typer(
    help="Canaries: step a candidate's weight up while it holds up on live traffic.",
    no_args_is_help=True,
)

LogicalArg = Annotated[str, typer.Argument(help="Logical model name (it needs a traffic policy).")]


def _print(status: CanaryStatus) -> None:
    steps = ",".join(f"{w:g}" for w in status.steps)
    typer.echo(
        f"{status.logical}: {status.state}  {status.candidate} vs {status.stable}"
        f"  step {status.step + 1}/{len(status.steps)} ({steps})  weight {status.weight:g}%"
    )
    if status.reason:
        typer.echo(f"  {status.reason}")
    err = status.analysis["error_rate"]["difference"]
    typer.echo(
        f"  error-rate increase {err['low']:+.2%} .. {err['high']:+.2%}"
        f" (max {status.spec['max_error_rate_increase']:.2%})"
        f"; ready to advance: {'yes' if status.analysis['ready'] else 'no'}"
    )
    rows = table("arm", "requests", "errors", "p50 ms", "p95 ms", keep=("arm",))
    for name in ("stable", "candidate"):
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


@app.command("start")
def start(
    logical: LogicalArg,
    candidate: Annotated[str, typer.Option("--candidate", help="The version to roll out.")],
    steps: Annotated[str, typer.Option("--steps", help="Weights, in percent.")] = "5,25,50,100",
    min_requests: Annotated[
        int, typer.Option("--min-requests", help="Candidate requests per step.")
    ] = 200,
    min_seconds: Annotated[float, typer.Option("--min-seconds", help="Seconds per step.")] = 60,
    min_minutes: Annotated[
        float | None, typer.Option("--min-minutes", help="Minutes per step (instead of s).")
    ] = None,
    max_error_rate_increase: Annotated[
        float, typer.Option("--max-error-rate-increase", help="E.g. 0.02 (2 points).")
    ] = 0.02,
    max_p95_increase: Annotated[
        float, typer.Option("--max-p95-increase", help="Allowed p95 growth, e.g. 0.5 (+50%).")
    ] = 0.5,
    alpha: Annotated[
        float, typer.Option("--alpha", help="False-alarm rate of the sequential tests.")
    ] = 0.05,
    json_out: JsonOpt = False,
) -> None:
    """Start a canary: the candidate takes the first step's weight now; the gateway's
    controller advances, holds, rolls back or promotes it."""
    status = workspace().serving.canaries.start(
        logical,
        candidate=candidate,
        steps=_steps(steps),
        min_requests=min_requests,
        min_seconds=min_minutes * 60 if min_minutes is not None else min_seconds,
        max_error_rate_increase=max_error_rate_increase,
        max_p95_increase=max_p95_increase,
        alpha=alpha,
    )
    if json_out:
        emit_json(status.to_json())
        return
    _print(status)


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
        rows.add_row(
            c.logical, c.state, c.candidate, f"{c.step + 1}/{len(c.steps)}", f"{c.weight:g}%"
        )
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
    format: Annotated[str, typer.Option("--format", help="argo (an AnalysisTemplate).")] = "argo",
    gateway_url: Annotated[
        str, typer.Option("--gateway-url", help="Where Argo reaches the llmops gateway.")
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
    """The canary analysis for Argo Rollouts: an AnalysisTemplate whose web metrics call the
    gateway's /canary/LOGICAL/analysis (Flagger: use that URL as a webhook)."""
    from llmops.errors import InputError
    from llmops.serve.backends import check_url
    from llmops.serve.export import argo_analysis, check_k8s_name, to_yaml

    if format != "argo":
        raise InputError(f"unknown export format {format!r}", hint="use --format argo")
    workspace().serving.canaries.row(logical)  # a canary must exist
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
    manifest = argo_analysis(logical, gateway_url=base, namespace=namespace, api_key_secret=secret)
    if json_out:
        emit_json(manifest.model_dump(exclude_none=True))
        return
    typer.echo(to_yaml(manifest), nl=False)
