"""Backends: OpenAI-compatible servers (vLLM, the local server, anyone's) registered for the
model versions they serve, with health checks.

A backend row says "``url`` answers for model version ``name@v`` when asked for
``served_name``". The launchers (:mod:`llmops.serve.launch`) register what they start;
:meth:`Backends.attach` registers a server someone else runs.
"""

from __future__ import annotations

import builtins
import json
import time
import urllib.request
import uuid
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import urlsplit

from sqlalchemy import select
from sqlmodel import col

from llmops.db.audit import record_event
from llmops.db.models import ServeBackend
from llmops.errors import InputError, NotFoundError, ServingError
from llmops.serve.records import Backend

if TYPE_CHECKING:
    from llmops.db import Database
    from llmops.registry import ModelRegistry

__all__ = ["BackendKind", "Backends", "check_url", "list_models", "wait_ready"]

BackendKind = Literal["local", "vllm", "external"]


def check_url(url: str) -> str:
    """``url`` as a base URL ending in ``/v1`` (``http://host:8000`` gets ``/v1``).

    Raises:
        InputError: It is not an http(s) URL with a host and a valid port, it carries
            credentials, a query, spaces or control characters, or names an endpoint.
    """
    text = url.strip()
    hint = "give the server's base URL, e.g. http://127.0.0.1:8000/v1"
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in text) or "%0" in text.lower():
        raise InputError(f"backend URL {text[:80]!r} has spaces or control characters", hint=hint)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"backend URL {text[:80]!r} is not an http(s) URL", hint=hint)
    if parts.username or parts.password:
        raise InputError(
            f"backend URL {parts.hostname} carries credentials",
            hint="pass the backend's API key through its own environment, not the URL",
        )
    try:
        port = parts.port
    except ValueError:
        raise InputError(f"backend URL {text[:80]!r} has an invalid port", hint=hint) from None
    if port == 0:
        raise InputError(f"backend URL {text[:80]!r} has port 0", hint=hint)
    if parts.query or parts.fragment:
        raise InputError(f"backend URL {text[:80]!r} has a query or fragment", hint=hint)
    path = parts.path.rstrip("/")
    if "/chat/" in f"{path}/" or path.endswith(("/completions", "/models")) or ".." in path:
        raise InputError(f"backend URL {text[:80]!r} names an endpoint, not the base", hint=hint)
    if not path.endswith("/v1"):
        path += "/v1"
    host = f"[{parts.hostname}]" if ":" in parts.hostname else parts.hostname
    return f"{parts.scheme}://{host}{f':{port}' if port else ''}{path}"


def _get(url: str, timeout_s: float) -> Any:
    with urllib.request.urlopen(url, timeout=timeout_s) as response:  # noqa: S310 - http(s) only
        return json.loads(response.read())


def list_models(url: str, *, timeout_s: float = 5.0) -> builtins.list[dict[str, Any]]:
    """The backend's ``GET /v1/models`` entries (vLLM lists an adapter's ``parent``).

    Raises:
        ServingError: The backend cannot be reached or answers something else.
    """
    try:
        data = _get(f"{check_url(url)}/models", timeout_s)
    except (OSError, ValueError) as exc:
        raise ServingError(
            f"backend {url} does not answer GET /v1/models ({exc})",
            hint="check that the server runs and the URL is right",
        ) from None
    entries = data.get("data") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        raise ServingError(f"backend {url} answered /v1/models without a data list")
    return [e for e in entries if isinstance(e, dict)]


def wait_ready(
    url: str,
    *,
    timeout_s: float,
    alive: Callable[[], bool] | None = None,
    served: Sequence[str] = (),
) -> builtins.list[dict[str, Any]]:
    """Poll ``/v1/models`` until the backend answers and lists every name in ``served``.

    Args:
        url: The base URL.
        timeout_s: Give up after this long.
        alive: A callable that returns False once the server process has died (stop early).
        served: Names the backend must list before it counts as ready.

    Raises:
        ServingError: Not ready in time, or the process died.
    """
    deadline = time.monotonic() + timeout_s
    last = "no answer"
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            raise ServingError(
                f"the backend for {url} exited before it was ready",
                hint="its log says why (see `llmops serve list`)",
            )
        try:
            models = list_models(url, timeout_s=2.0)
        except ServingError as exc:
            last = exc.message
        else:
            names = {str(m.get("id")) for m in models}
            missing = [s for s in served if s not in names]
            if not missing:
                return models
            last = f"it does not list {', '.join(missing)} yet"
        time.sleep(0.25)
    raise ServingError(f"backend {url} was not ready after {timeout_s:.0f} s: {last}")


def _record(row: ServeBackend) -> Backend:
    return Backend(
        id=row.id,
        model=row.model,
        version=row.version,
        digest=row.digest,
        served_name=row.served_name,
        url=row.url,
        kind=row.kind,
        base=row.base,
        pid=row.pid,
        status=row.status,
        created_by=row.created_by,
        created_at=row.created_at,
    )


class Backends:
    """Registered backends (``ws.serving.backends``)."""

    def __init__(self, db: Database, models: ModelRegistry, *, actor: str) -> None:
        self.db = db
        self.models = models
        self.actor = actor

    def __repr__(self) -> str:
        return "Backends(.attach(ref, url=..., served_name=...), .list(), .detach(id))"

    def attach(
        self,
        ref: str,
        *,
        url: str,
        served_name: str,
        kind: BackendKind = "external",
        base: str | None = None,
        pid: int | None = None,
        check: bool = False,
    ) -> Backend:
        """Register ``url`` as serving model version ``ref`` under ``served_name``.

        Attaching the same URL and served name again re-points it (the old row is kept in
        the audit log).

        Args:
            check: Also require the backend to list ``served_name`` in ``/v1/models`` now.

        Raises:
            NotFoundError: ``ref`` names no model version.
            InputError: The URL or served name is unusable.
            ServingError: ``check`` and the backend does not list it.
        """
        version = self.models.get(ref)
        url = check_url(url)
        if (
            not served_name
            or len(served_name) > 256
            or any(not c.isprintable() or c.isspace() for c in served_name)
        ):
            raise InputError(
                f"served name {served_name[:40]!r} is empty, too long, or has spaces or"
                " unprintable characters",
                hint="pass the name the backend lists in /v1/models",
            )
        if check:
            names = {str(m.get("id")) for m in list_models(url)}
            if served_name not in names:
                raise ServingError(
                    f"backend {url} does not list {served_name!r} (it lists"
                    f" {', '.join(sorted(names)[:5]) or 'nothing'})",
                    hint="pass --served-name as /v1/models names it",
                )
        with self.db.write() as session:
            row = session.scalars(
                select(ServeBackend).where(
                    col(ServeBackend.url) == url, col(ServeBackend.served_name) == served_name
                )
            ).first()
            before = (
                None if row is None else {"ref": f"{row.model}@{row.version}", "status": row.status}
            )
            if row is None:
                row = ServeBackend(
                    id=f"be-{uuid.uuid4().hex[:10]}",
                    url=url,
                    served_name=served_name,
                    model=version.name,
                    version=version.version,
                    digest=version.digest,
                    kind=kind,
                    created_by=self.actor,
                )
            row.model, row.version, row.digest = version.name, version.version, version.digest
            row.kind, row.base, row.pid, row.status = kind, base, pid, "up"
            session.add(row)
            record_event(
                session,
                actor=self.actor,
                action="serve.backend.attach",
                entity_type="backend",
                entity_key=row.id,
                before=before,
                after={"ref": version.ref, "url": url, "served_name": served_name, "kind": kind},
            )
            session.flush()
            return _record(row)

    def list(self, *, all: bool = False) -> builtins.list[Backend]:
        """Backends that are up (``all``: also those marked down)."""
        query = select(ServeBackend).order_by(col(ServeBackend.created_at))
        if not all:
            query = query.where(col(ServeBackend.status) == "up")
        with self.db.read() as session:
            return [_record(r) for r in session.scalars(query).all()]

    def get(self, backend_id: str) -> Backend:
        """One backend by id.

        Raises:
            NotFoundError: No such backend.
        """
        with self.db.read() as session:
            row = session.get(ServeBackend, backend_id)
        if row is None:
            raise NotFoundError(f"no backend {backend_id!r}", hint="see `llmops serve list`")
        return _record(row)

    def detach(self, backend_id: str) -> Backend:
        """Mark a backend down: the gateway stops sending it requests.

        Raises:
            NotFoundError: No such backend.
        """
        return self.mark(backend_id, "down")

    def mark(self, backend_id: str, status: Literal["up", "down"]) -> Backend:
        """Set a backend's status (audited)."""
        with self.db.write() as session:
            row = session.get(ServeBackend, backend_id)
            if row is None:
                raise NotFoundError(f"no backend {backend_id!r}", hint="see `llmops serve list`")
            if row.status != status:
                record_event(
                    session,
                    actor=self.actor,
                    action=f"serve.backend.{status}",
                    entity_type="backend",
                    entity_key=row.id,
                    before={"status": row.status},
                    after={"status": status},
                )
                row.status = status
                session.add(row)
            session.flush()
            return _record(row)

    def health(self, backend_id: str, *, timeout_s: float = 5.0) -> dict[str, Any]:
        """Probe one backend: ``{"ok": bool, "lists_served_name": bool, "detail": ...}``."""
        backend = self.get(backend_id)
        try:
            names = {str(m.get("id")) for m in list_models(backend.url, timeout_s=timeout_s)}
        except ServingError as exc:
            return {"ok": False, "lists_served_name": False, "detail": exc.message}
        listed = backend.served_name in names
        return {
            "ok": listed,
            "lists_served_name": listed,
            "detail": "ready" if listed else f"does not list {backend.served_name}",
        }
