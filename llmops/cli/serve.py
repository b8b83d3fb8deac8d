"""``llmops serve ...``: start backends from the registry, attach running ones, list, stop,
and load adapters into a running server."""

from __future__ import annotations

from typing import Annotated, Literal

import typer

from llmops.cli._common import JsonOpt, emit_json, print_table, steps, table, workspace

app = typer.Typer(
    help="Serving backends: vLLM or the local server, started from the registry or attached.",
    no_args_is_help=True,
)


def _refs(text: str) -> list[str]:
    return [r.strip() for r in text.split(",") if r.strip()]


@app.command("start")
def start(
    base: Annotated[str, typer.Option("--base", help="Base model version (name@production).")],
    adapters: Annotated[
        str, typer.Option("--adapters", help="Adapter versions to serve, comma-separated.")
    ] = "",
    backend: Annotated[
        str, typer.Option("--backend", help="local (transformers + peft) or vllm.")
    ] = "local",
    host: Annotated[str, typer.Option("--host", help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", help="Port of the backend server.")] = 8000,
    vllm_python: Annotated[
        str | None,
        typer.Option("--vllm-python", help="python of vLLM's own venv (else $LLMOPS_VLLM_PYTHON)."),
    ] = None,
    max_model_len: Annotated[
        int | None, typer.Option("--max-model-len", help="vLLM: context length to allocate.")
    ] = None,
    max_lora_rank: Annotated[
        int | None,
        typer.Option("--max-lora-rank", help="vLLM: room for adapters loaded later (>= 16)."),
    ] = None,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait for the server to be ready.")
    ] = 600.0,
    detach: Annotated[
        bool, typer.Option("--detach", "-d", help="Leave the server running and return.")
    ] = False,
    dry_run: Annotated[
        bool,
        typer.Option("--dry-run", help="Pull the models, print the command line, start nothing."),
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Start a backend for a base model and its adapters (each served under a digest name),
    wait until it is ready, and register it for the gateway."""
    import shlex

    from llmops.errors import InputError

    if backend not in ("local", "vllm"):
        raise InputError(f"unknown backend {backend!r}", hint="use --backend local or vllm")
    ws = workspace()
    serving = ws.serving
    kind: Literal["local", "vllm"] = "vllm" if backend == "vllm" else "local"
    with steps(enabled=not json_out) as step:
        step(f"pulling {base} and {len(_refs(adapters))} adapter(s)")
        plan = serving.plan(base, _refs(adapters), kind=kind, host=host, port=port,
                            python=vllm_python, max_model_len=max_model_len,
                            max_lora_rank=max_lora_rank)  # fmt: skip
    if dry_run:
        if json_out:
            emit_json(plan.to_json())
            return
        env = " ".join(f"{k}={v}" for k, v in plan.env.items())
        typer.echo(f"{env + ' ' if env else ''}{shlex.join(plan.argv)}")
        return
    from llmops.serve.launch import launch, stop_process

    with steps(enabled=not json_out) as step:
        step(f"starting the {kind} backend on {plan.url} (log: {plan.log})")
        launched, proc = launch(plan, serving.backends, timeout_s=timeout)
    if json_out:
        emit_json(launched.to_json())
    else:
        typer.echo(f"{kind} backend ready on {launched.url} in {launched.seconds:.0f} s"
                   f" (pid {launched.pid}, log {launched.log})")  # fmt: skip
        for b in launched.backends:
            typer.echo(f"  {b.id}  {b.ref:<32} served as {b.served_name}")
        listed = ", ".join(
            f"{m.get('id')}" + (f" (parent {m['parent']})" if m.get("parent") else "")
            for m in launched.models
        )
        typer.echo(f"  /v1/models: {listed}")
    if detach:
        return
    if not json_out:
        typer.echo("serving until Ctrl-C (use --detach to leave it running)")
    try:
        proc.wait()
    except KeyboardInterrupt:
        stop_process(proc.pid)
    finally:
        for b in launched.backends:
            serving.backends.mark(b.id, "down")


@app.command("attach")
def attach(
    ref: Annotated[str, typer.Argument(help="The model version it serves (name@7).")],
    url: Annotated[str, typer.Option("--url", help="Its base URL (http://host:8000/v1).")],
    served_name: Annotated[
        str, typer.Option("--served-name", help="The model name it expects in requests.")
    ],
    check: Annotated[
        bool, typer.Option("--check/--no-check", help="Require it to list the name now.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Register an OpenAI-compatible server someone else runs as a backend for a version."""
    backend = workspace().serving.backends.attach(ref, url=url, served_name=served_name,
                                                  check=check)  # fmt: skip
    if json_out:
        emit_json(backend.to_json())
        return
    typer.echo(f"attached {backend.id}: {backend.ref} at {backend.url} as {backend.served_name}")


@app.command("list")
def list_backends(
    all_: Annotated[bool, typer.Option("--all", help="Also backends marked down.")] = False,
    json_out: JsonOpt = False,
) -> None:
    """Registered backends."""
    backends = workspace().serving.backends.list(all=all_)
    if json_out:
        emit_json([b.to_json() for b in backends])
        return
    rows = table("id", "model", "served name", "url", "kind", "status", keep=("id", "model"))
    for b in backends:
        rows.add_row(b.id, b.ref, b.served_name, b.url, b.kind, b.status)
    print_table(rows)


@app.command("health")
def health(
    backend_id: Annotated[str, typer.Argument(help="Backend id (be-...).")],
    json_out: JsonOpt = False,
) -> None:
    """Probe a backend: does it answer and list its served name? (exit 1 when not)."""
    result = workspace().serving.backends.health(backend_id)
    if json_out:
        emit_json(result)
    else:
        typer.echo(f"{backend_id}: {'ok' if result['ok'] else 'NOT READY'} ({result['detail']})")
    if not result["ok"]:
        raise typer.Exit(1)


@app.command("stop")
def stop(
    backend_id: Annotated[str | None, typer.Argument(help="Backend id (be-...).")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="Every server `serve start` launched on this machine.")
    ] = False,
    json_out: JsonOpt = False,
) -> None:
    """Stop the server behind a backend that `serve start --detach` launched (an attached one
    is only marked down)."""
    from llmops.errors import InputError

    serving = workspace().serving
    if all_ == (backend_id is not None):
        raise InputError("name one backend id or pass --all", hint="see `llmops serve list`")
    if all_:
        stopped = serving.stop_all()
    else:
        assert backend_id is not None
        stopped = serving.stop(backend_id)
    if json_out:
        emit_json([b.to_json() for b in stopped])
        return
    for b in stopped:
        typer.echo(f"{b.id} ({b.ref}) is down")


@app.command("load")
def load(
    ref: Annotated[str, typer.Argument(help="Adapter version to load (name@7).")],
    on: Annotated[str, typer.Option("--on", help="A backend id of the running server.")],
    json_out: JsonOpt = False,
) -> None:
    """Load an adapter into a running server at run time, under its digest name."""
    backend = workspace().serving.load_adapter(ref, backend_id=on)
    if json_out:
        emit_json(backend.to_json())
        return
    typer.echo(f"loaded {backend.ref} as {backend.served_name} on {backend.url} ({backend.id})")


@app.command("unload")
def unload(
    backend_id: Annotated[str, typer.Argument(help="The adapter's backend id (be-...).")],
    json_out: JsonOpt = False,
) -> None:
    """Unload an adapter from its server and mark its backend down."""
    backend = workspace().serving.unload_adapter(backend_id)
    if json_out:
        emit_json(backend.to_json())
        return
    typer.echo(f"unloaded {backend.served_name} from {backend.url}")


@app.command("layout")
def layout(
    ref: Annotated[str, typer.Argument(help="Adapter version (name@7).")],
    cache_dir: Annotated[
        str, typer.Option("--dir", help="vLLM's VLLM_LORA_RESOLVER_CACHE_DIR (shared storage).")
    ],
    base: Annotated[
        str | None, typer.Option("--base", help="Its base model version (else from lineage).")
    ] = None,
    json_out: JsonOpt = False,
) -> None:
    """Lay an adapter out for vLLM's filesystem resolver (multi-node deployments): vLLM loads
    it by its digest name on first request."""
    from pathlib import Path

    folder = workspace().serving.layout(ref, Path(cache_dir), base=base)
    if json_out:
        emit_json({"path": str(folder), "served_name": folder.name})
        return
    typer.echo(f"{folder}  (request it as {folder.name!r})")
    typer.echo(
        f"start vLLM with VLLM_PLUGINS=lora_filesystem_resolver"
        f" VLLM_LORA_RESOLVER_CACHE_DIR={Path(cache_dir).resolve()}"
        " VLLM_ALLOW_RUNTIME_LORA_UPDATING=True --enable-lora"
    )
