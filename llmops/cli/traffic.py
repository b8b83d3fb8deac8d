"""``llmops traffic ...``: traffic policies of logical models (split, stickiness, shadow, kill
switch) and their per-arm numbers; exports to llm-d and KServe."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmops.cli._common import JsonOpt, emit_json, output_path, print_table, table, workspace

if TYPE_CHECKING:
    from llmops.serve import TrafficStatus

app = typer.Typer(
    help="Traffic policies: stable and candidate arms, weights, sticky keys, shadow, kill.",
    no_args_is_help=True,
)

LogicalArg = Annotated[str, typer.Argument(help="Logical model name clients send.")]


def _optional(text: str | None) -> Any:
    from llmops.serve.traffic import UNSET

    if text is None:
        return UNSET
    return None if text.strip().lower() in ("none", "") else text


@app.command("set")
def set_policy(
    logical: LogicalArg,
    stable: Annotated[
        str | None, typer.Option("--stable", help="Stable arm (name@production).")
    ] = None,
    candidate: Annotated[
        str | None, typer.Option("--candidate", help="Candidate arm (name@7; none removes it).")
    ] = None,
    weight: Annotated[
        float | None, typer.Option("--weight", help="Percent of requests for the candidate.")
    ] = None,
    sticky: Annotated[
        str | None,
        typer.Option("--sticky", help="header:NAME, conversation, or none."),
    ] = None,
    shadow: Annotated[
        float | None,
        typer.Option(
            "--shadow", help="Share (0-1) of answered requests mirrored to the other arm."
        ),
    ] = None,
    cohort: Annotated[
        list[str] | None,
        typer.Option(
            "--cohort",
            help="HEADER=VALUE[,VALUE...]: those requests go to the candidate (repeat; none).",
        ),
    ] = None,
    if_revision: Annotated[
        int | None, typer.Option("--if-revision", help="Apply only at this revision.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create or change a policy; options left out keep their values."""
    from llmops.serve.traffic import UNSET

    policy = workspace().serving.traffic.set(
        logical,
        stable=UNSET if stable is None else stable,
        candidate=_optional(candidate),
        weight=UNSET if weight is None else weight,
        sticky=_optional(sticky),
        shadow=UNSET if shadow is None else shadow,
        cohorts=UNSET if cohort is None else (None if cohort == ["none"] else cohort),
        if_revision=if_revision,
    )
    if json_out:
        emit_json(policy.to_json())
        return
    arms = f"stable {policy.stable}"
    if policy.candidate:
        arms += f", candidate {policy.candidate} at {policy.weight:g}%"
    extra = f"; sticky {policy.sticky}" if policy.sticky else ""
    extra += f"; shadow {policy.shadow:g}" if policy.shadow else ""
    extra += "".join(f"; cohort {_cohort(c)}" for c in policy.cohorts)
    typer.echo(f"{logical} (revision {policy.revision}): {arms}{extra}")


def _cohort(rule: dict[str, Any]) -> str:
    return f"{rule['header']}={','.join(rule['values'])}"


@app.command("kill")
def kill(
    logical: LogicalArg,
    reason: Annotated[
        str, typer.Option("--reason", "-m", help="Why (kept in the audit log).")
    ] = "",
    json_out: JsonOpt = False,
) -> None:
    """The kill switch: everything goes to the stable arm at once."""
    policy = workspace().serving.traffic.kill(logical, reason=reason)
    if json_out:
        emit_json(policy.to_json())
        return
    typer.echo(
        f"{logical}: killed; every request goes to {policy.stable} (revision {policy.revision})"
    )


def _print_status(status: TrafficStatus) -> None:
    typer.echo(f"{status.logical}  revision {status.revision}  by {status.updated_by}"
               f"{'  KILLED' if status.killed else ''}")  # fmt: skip
    for arm in ("stable", "candidate"):
        ref = getattr(status, arm)
        if ref is None:
            continue
        weight = 100 - status.weight if arm == "stable" else status.weight
        typer.echo(f"  {arm:<9} {ref} -> {status.resolved.get(arm) or 'UNRESOLVED'}"
                   f"  ({weight:g}%)")  # fmt: skip
    same = status.resolved.get("candidate")
    if status.candidate and same and same == status.resolved.get("stable"):
        typer.echo(f"  WARNING: both arms resolve to {same} (an alias moved): set --candidate")
    typer.echo(f"  sticky {status.sticky or 'no'}; shadow {status.shadow:g}"
               f" ({status.shadow_pairs} pairs kept)")  # fmt: skip
    for rule in status.cohorts:
        typer.echo(f"  cohort {_cohort(rule)} -> candidate")
    for c in status.candidates:
        typer.echo(f"  bandit arm {c['ref']}: {c['share']:.1%} of the candidate weight")
    if not status.arms:
        typer.echo("  no requests yet")
        return
    rows = table("arm", "requests", "errors", "error rate", "failovers", "p50 ms", "p95 ms",
                 "feedback", keep=("arm",))  # fmt: skip
    for name, s in sorted(status.arms.items()):
        rate = "-" if s.error_rate is None else f"{s.error_rate:.2%}"
        fb = "-" if s.feedback_mean is None else f"{s.feedback_mean:.2f} (n={s.feedback})"
        rows.add_row(name, str(s.requests), str(s.errors), rate, str(s.failovers),
                     f"{s.p50_ms}" if s.p50_ms is not None else "-",
                     f"{s.p95_ms}" if s.p95_ms is not None else "-", fb)  # fmt: skip
    print_table(rows)


@app.command("show")
def show(
    logical: LogicalArg,
    since: Annotated[
        str | None, typer.Option("--since", help="Only requests since (ISO time or 1h, 7d).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """A policy, the versions its arms resolve to, and per-arm numbers from every replica."""
    from llmops.db.timestamps import parse_when

    when = parse_when(since, what="--since") if since else None
    status = workspace().serving.show(logical, since=when)
    if json_out:
        emit_json(status.to_json())
        return
    _print_status(status)


@app.command("list")
def list_policies(json_out: JsonOpt = False) -> None:
    """Every logical model's policy."""
    policies = workspace().serving.traffic.list()
    if json_out:
        emit_json([p.to_json() for p in policies])
        return
    rows = table("logical", "stable", "candidate", "weight", "sticky", "shadow", "revision",
                 keep=("logical",))  # fmt: skip
    for p in policies:
        rows.add_row(p.logical, p.stable, p.candidate or "-",
                     "killed" if p.killed else f"{p.weight:g}%", p.sticky or "-",
                     f"{p.shadow:g}", str(p.revision))  # fmt: skip
    print_table(rows)


@app.command("history")
def history(logical: LogicalArg, json_out: JsonOpt = False) -> None:
    """The audited changes of a policy."""
    events = workspace().serving.traffic.history(logical)
    if json_out:
        emit_json(events)
        return
    for e in events:
        after = e["after"] or {}
        reason = f"  ({after['reason']})" if after.get("reason") else ""
        typer.echo(
            f"{e['at']}  rev {after.get('revision')}  {e['actor']:<12} {e['action']:<13}"
            f" stable {after.get('stable')}  candidate {after.get('candidate')}"
            f"  weight {after.get('weight')}  shadow {after.get('shadow')}{reason}"
        )


@app.command("export")
def export(
    logical: LogicalArg,
    format: Annotated[str, typer.Option("--format", help="llm-d or kserve.")] = "llm-d",
    pool: Annotated[
        str | None, typer.Option("--pool", help="llm-d: the InferencePool's name.")
    ] = None,
    namespace: Annotated[
        str | None, typer.Option("--namespace", help="Kubernetes namespace.")
    ] = None,
    uri: Annotated[
        str,
        typer.Option(
            "--uri", help="Where the engine finds a model's files ({served_name}, {model})."
        ),
    ] = "pvc://llmops-models/{served_name}",
    output: Annotated[str | None, typer.Option("--output", "-o", help="Write to a file.")] = None,
    json_out: JsonOpt = False,
) -> None:
    """The policy as a Kubernetes manifest: llm-d InferenceModelRewrite or KServe
    LLMInferenceService (weighted per request there: not sticky, no shadow pairs)."""
    from llmops._atomic import write_atomic
    from llmops.errors import InputError

    if format not in ("llm-d", "kserve"):
        raise InputError(f"unknown export format {format!r}", hint="use --format llm-d or kserve")
    text = workspace().serving.export(logical, format=format, pool=pool,  # type: ignore[arg-type]
                                      namespace=namespace, uri=uri)  # fmt: skip
    if json_out:
        import yaml

        emit_json(yaml.safe_load(text))
        return
    if output is None:
        typer.echo(text, nl=False)
        return
    write_atomic(output_path(output), [text])
    typer.echo(f"wrote {output}", err=True)
