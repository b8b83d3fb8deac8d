"""``llmops app``: the Streamlit dashboard for the workspace, on 127.0.0.1 unless told otherwise.

The dashboard is ``app/dashboard.py`` in a source checkout and ``llmops/_app/dashboard.py`` in
an installed wheel; it opens the workspace named by ``LLMOPS_WORKSPACE``, which this command
sets to the workspace resolved as every command resolves it.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from llmops.cli._common import JsonOpt, emit_json, workspace

__all__ = ["app_command", "dashboard_path", "streamlit_command"]


def dashboard_path() -> Path:
    """Where the dashboard's entry point is.

    Raises:
        InputError: neither a source checkout's ``app/`` nor the wheel's copy is there.
    """
    from llmops.errors import InputError

    package = Path(__file__).resolve().parent.parent
    for candidate in (package.parent / "app" / "dashboard.py", package / "_app" / "dashboard.py"):
        if candidate.is_file():
            return candidate
    raise InputError(
        "the dashboard's files are not installed next to llmops",
        hint="reinstall llmops (pip install 'llmops[app]') or run from a source checkout",
    )


# What the pages import, loaded before the server starts: the first visitor's page then runs
# without paying about a second of imports.
PRELOAD = (
    "pandas", "altair", "llmops.workspace", "llmops.evals.results", "llmops.evals.cases_compared",
    "llmops.evals.reviews", "llmops.evals.stats", "llmops.registry", "llmops.serve.traffic",
)  # fmt: skip


def streamlit_command(port: int, *, address: str = "127.0.0.1") -> list[str]:
    """The command line that serves the dashboard headless on ``address:port``."""
    return [
        sys.executable, "-m", "llmops.cli.dashboard", "run", str(dashboard_path()),
        "--server.headless", "true", "--server.address", address, "--server.port", str(port),
        "--browser.gatherUsageStats", "false", "--server.fileWatcherType", "none",
        "--global.developmentMode", "false", "--client.toolbarMode", "minimal",
    ]  # fmt: skip


def _check_address(address: str) -> None:
    """An interface this machine can bind, or a one-line error."""
    from llmops.errors import InputError

    try:
        socket.getaddrinfo(address, None, type=socket.SOCK_STREAM, flags=socket.AI_NUMERICHOST)
    except (socket.gaierror, UnicodeError):
        raise InputError(
            f"--address {address!r} is not an IP address",
            hint="give 127.0.0.1 (this machine only) or 0.0.0.0 (every interface)",
        ) from None


def app_command(
    port: Annotated[int, typer.Option("--port", min=1, max=65535, help="Port to serve on.")] = 8501,
    address: Annotated[
        str,
        typer.Option("--address", help="Interface to bind (0.0.0.0 exposes it to the network)."),
    ] = "127.0.0.1",
    json_out: JsonOpt = False,
) -> None:
    """Open the dashboard: eval comparisons, human review, prompts, registry, runs, canaries."""
    from llmops._extras import require

    require("streamlit", feature="llmops app")
    _check_address(address)
    ws = workspace()
    env = {**os.environ, "LLMOPS_WORKSPACE": str(ws.root)}
    command = streamlit_command(port, address=address)
    url = f"http://{address}:{port}"
    if json_out:  # one document on stdout; the server's own lines go to stderr
        emit_json({"url": url, "workspace": str(ws.root), "health": f"{url}/_stcore/health"})
        sys.stdout.flush()
    typer.echo(f"dashboard for {ws.root} on {url} (Ctrl-C stops it)", err=True)
    with subprocess.Popen(command, env=env, stdout=sys.stderr if json_out else None) as proc:
        # stopped by a service manager (SIGTERM): stop the server too, never leave it behind
        previous = signal.signal(signal.SIGTERM, lambda *_: proc.terminate())
        try:
            code = proc.wait()
        except KeyboardInterrupt:
            proc.terminate()
            code = proc.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)
    raise typer.Exit(0 if code in (0, -2, -15) else code)


def _serve(argv: list[str]) -> None:
    """``python -m llmops.cli.dashboard run ...``: streamlit's own command line, after loading
    what the pages import."""
    import contextlib
    import importlib

    for name in PRELOAD:
        # an optional part missing: the page that needs it says so
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    from streamlit.web import cli as streamlit_cli

    sys.argv = ["streamlit", *argv]
    streamlit_cli.main()


if __name__ == "__main__":
    _serve(sys.argv[1:])
