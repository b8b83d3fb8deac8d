"""``llmops gateway``: run the OpenAI-compatible gateway; ``llmops gateway keys ...``: its
API keys."""

from __future__ import annotations

from typing import Annotated

import typer

from llmops.cli._common import JsonOpt, emit_json, print_table, table, workspace

app = typer.Typer(
    help="The OpenAI-compatible gateway in front of the backends (and its API keys).",
    invoke_without_command=True,
)
keys_app = typer.Typer(help="Gateway API keys (once one exists, every request needs one).",
                       no_args_is_help=True)  # fmt: skip
app.add_typer(keys_app, name="keys")


@app.callback()
def gateway(
    ctx: typer.Context,
    port: Annotated[int, typer.Option("--port", help="Port to listen on.")] = 8080,
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    refresh: Annotated[
        float, typer.Option("--refresh", help="Seconds between re-reads of policies and keys.")
    ] = 1.0,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Longest a backend may take for one answer (s).")
    ] = 300.0,
    candidate_timeout: Annotated[
        float,
        typer.Option("--candidate-timeout", help="A candidate silent this long fails over (s)."),
    ] = 30.0,
    max_request_bytes: Annotated[
        int, typer.Option("--max-request-bytes", help="Larger request bodies get 413.")
    ] = 1_048_576,
    canary_interval: Annotated[
        float, typer.Option("--canary-interval", help="Seconds between canary evaluations.")
    ] = 2.0,
    quiet: Annotated[bool, typer.Option("--quiet", help="No access log on stderr.")] = False,
    log_prompts: Annotated[
        bool, typer.Option("--log-prompts", help="Put messages and answers in the access log.")
    ] = False,
) -> None:
    """Serve /v1/chat/completions, /v1/models, /v1/feedback, /healthz and /metrics, routing
    logical models by their traffic policies (until Ctrl-C)."""
    if ctx.invoked_subcommand is not None:
        return
    import logging
    import sys

    from llmops.serve import GatewayConfig

    if not quiet:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(message)s"))
        logger = logging.getLogger("llmops.gateway")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    config = GatewayConfig(host=host, port=port, refresh_s=refresh, timeout_s=timeout,
                           candidate_timeout_s=candidate_timeout,
                           max_request_bytes=max_request_bytes, access_log=not quiet,
                           log_prompts=log_prompts, canary_interval_s=canary_interval)  # fmt: skip
    workspace().serving.gateway(config).run()


@keys_app.command("create")
def create_key(
    name: Annotated[str, typer.Option("--name", help="A label for listings.")] = "",
    models: Annotated[
        str, typer.Option("--models", help="Logical models it may call, comma-separated (all).")
    ] = "",
    rate: Annotated[
        str | None, typer.Option("--rate", help="Rate limit per replica: 600/min, 10/s, 1000/hour.")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Create a key and print it once (only its SHA-256 is stored)."""
    scopes = [m.strip() for m in models.split(",") if m.strip()]
    created = workspace().serving.keys.create(name, models=scopes, rate=rate)
    if json_out:
        emit_json(created.to_json())
        return
    typer.echo(created.secret)
    typer.echo(f"created {created.key.id}; this is the only time the key is shown", err=True)


@keys_app.command("list")
def list_keys(
    all_: Annotated[bool, typer.Option("--all", help="Also revoked keys.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Keys with their scopes and limits (never the keys themselves)."""
    keys = workspace().serving.keys.list(all=all_)
    if json_out:
        emit_json([k.to_json() for k in keys])
        return
    rows = table("id", "prefix", "name", "models", "rate/min", "revoked", keep=("id",))
    for k in keys:
        rows.add_row(k.id, k.prefix + "…", k.name, ", ".join(k.models) or "all",
                     str(k.rate_per_minute or "-"), "yes" if k.revoked else "")  # fmt: skip
    print_table(rows)


@keys_app.command("revoke")
def revoke_key(
    key_id: Annotated[str, typer.Argument(help="Key id (key-...).")],
    json_out: JsonOpt = False,
) -> None:
    """Revoke a key (gateways refuse it within their refresh interval)."""
    key = workspace().serving.keys.revoke(key_id)
    if json_out:
        emit_json(key.to_json())
        return
    typer.echo(f"revoked {key.id}")
