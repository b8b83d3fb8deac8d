"""Delivering the event outbox to webhooks (``[[events.webhooks]]`` in ``llmops.toml``).

Each event is POSTed as JSON to every webhook whose ``events`` list names its type (or ``*``),
with ``X-LLMOps-Event`` (the type), ``X-LLMOps-Delivery`` (the event's id, for idempotent
receivers) and, with ``secret_env``, ``X-LLMOps-Signature: sha256=<hex HMAC-SHA256 of the
body>``. A failed attempt (timeout, refused connection, non-2xx) is retried with exponential
backoff (2, 4, 8 ... seconds, at most 5 minutes) until ``max_attempts``; each delivery's status,
attempts and last error are rows of ``event_delivery``. Delivery runs after a command has
committed its change, so a slow or failing receiver never blocks or undoes it.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Protocol

from sqlalchemy import select
from sqlmodel import col

from llmops._redact import redact
from llmops.db.models import EventDelivery, RegistryEvent
from llmops.db.timestamps import as_utc, utcnow

if TYPE_CHECKING:
    from llmops.db import Database


class WebhookConfig(Protocol):
    """A webhook's settings (``[[events.webhooks]]``, validated by the workspace config)."""

    url: str
    name: str
    events: list[str]
    secret_env: str | None
    timeout_s: float
    max_attempts: int


__all__ = ["DeliveryReport", "WebhookConfig", "deliver", "list_events", "sign", "webhook_name"]

_WINDOW = 1000
"""Events considered for new deliveries: the newest this many (older ones were offered)."""
_MAX_BACKOFF_S = 300.0


@dataclass(slots=True)
class DeliveryReport:
    """What one :func:`deliver` call did."""

    delivered: int = 0
    failed: int = 0
    """Attempts that failed (retried later unless attempts ran out)."""
    pending: int = 0
    """Deliveries still waiting for a later attempt."""


def webhook_name(hook: WebhookConfig) -> str:
    """The webhook's name: its own, else host and path (never credentials or the query)."""
    if hook.name:
        return hook.name[:128]
    url = urllib.parse.urlsplit(hook.url)
    return f"{url.hostname or '?'}{':' + str(url.port) if url.port else ''}{url.path}"[:128]


def sign(body: bytes, secret: str) -> str:
    """``sha256=<hex>``: the HMAC-SHA256 of ``body`` with ``secret``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def _wants(hook: WebhookConfig, event_type: str) -> bool:
    return "*" in hook.events or event_type in hook.events


def deliver(
    db: Database,
    hooks: Sequence[WebhookConfig],
    *,
    budget_s: float = 10.0,
    wait: bool = False,
) -> DeliveryReport:
    """Offer new events to the webhooks and make the attempts that are due, for at most
    ``budget_s`` seconds (``wait``: also wait for retries that come due within it)."""
    report = DeliveryReport()
    if not hooks:
        return report
    by_name = {webhook_name(h): h for h in hooks}
    deadline = time.monotonic() + budget_s
    _offer(db, by_name)
    while time.monotonic() < deadline:
        due = _claim(db, list(by_name))
        if due is None:
            if not wait or not _pending(db, list(by_name)):
                break
            time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
            continue
        delivery, event = due
        hook = by_name[delivery[1]]
        # No attempt outlasts the budget: a receiver that never answers holds up nothing.
        left = max(deadline - time.monotonic(), 0.1)
        error = _post(hook, event, timeout_s=min(hook.timeout_s, left))
        _finish(db, delivery, hook, error)
        if error is None:
            report.delivered += 1
        else:
            report.failed += 1
    report.pending = len(_pending(db, list(by_name)))
    return report


def _offer(db: Database, hooks: dict[str, WebhookConfig]) -> None:
    """A pending delivery row for every recent event a webhook wants and has no row for."""
    with db.write() as session:
        events = session.execute(
            select(col(RegistryEvent.id), col(RegistryEvent.type))
            .order_by(col(RegistryEvent.id).desc())
            .limit(_WINDOW)
        ).all()
        if not events:
            return
        have = {
            (e, w)
            for e, w in session.execute(
                select(col(EventDelivery.event_id), col(EventDelivery.webhook)).where(
                    col(EventDelivery.event_id) >= min(e[0] for e in events)
                )
            )
        }
        for event_id, event_type in events:
            for name, hook in hooks.items():
                if (event_id, name) not in have and _wants(hook, event_type):
                    session.add(EventDelivery(event_id=event_id, webhook=name, status="pending"))


def _pending(db: Database, names: list[str]) -> list[tuple[int, str]]:
    with db.read() as session:
        return [
            (e, w)
            for e, w in session.execute(
                select(col(EventDelivery.event_id), col(EventDelivery.webhook)).where(
                    col(EventDelivery.status) == "pending", col(EventDelivery.webhook).in_(names)
                )
            )
        ]


def _claim(db: Database, names: list[str]) -> tuple[tuple[int, str], dict[str, Any]] | None:
    """The oldest due delivery, its next attempt pushed back while this process makes it (two
    processes delivering at once do not send it twice)."""
    now = utcnow()
    with db.write() as session:
        row = session.scalar(
            select(EventDelivery)
            .where(
                col(EventDelivery.status) == "pending",
                col(EventDelivery.webhook).in_(names),
                col(EventDelivery.next_attempt_at) <= now,
            )
            .order_by(col(EventDelivery.event_id))
            .limit(1)
        )
        if row is None:
            return None
        row.next_attempt_at = now + timedelta(seconds=90)
        event = session.get(RegistryEvent, row.event_id)
        assert event is not None
        data = {"type": event.type, "delivery_id": event.delivery_id, "payload": event.payload}
        return (row.event_id, row.webhook), data


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect would resend the event as a body-less GET elsewhere: it is a failure."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def _post(hook: WebhookConfig, event: dict[str, Any], *, timeout_s: float) -> str | None:
    """One attempt; the error in one line, or None when the receiver answered 2xx."""
    body = json.dumps(event["payload"], sort_keys=True, ensure_ascii=False).encode()
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "llmops-webhooks",
        "X-LLMOps-Event": event["type"],
        "X-LLMOps-Delivery": event["delivery_id"],
    }
    if hook.secret_env:
        secret = os.environ.get(hook.secret_env)
        if not secret:
            return f"secret_env {hook.secret_env} is not set: nothing was sent"
        headers["X-LLMOps-Signature"] = sign(body, secret)
    # http(s) only: WebhookConfig refuses other schemes (file:, ftp: ...).
    request = urllib.request.Request(hook.url, data=body, headers=headers, method="POST")  # noqa: S310
    try:
        with _OPENER.open(request, timeout=timeout_s) as response:
            status = response.status
    except urllib.error.HTTPError as exc:
        moved = " (redirects are not followed: give the final URL)" if 300 <= exc.code < 400 else ""
        return f"HTTP {exc.code} {exc.reason}{moved}"
    except TimeoutError:
        return f"timed out after {timeout_s:g} s"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return f"unreachable: {reason}"
    return None if 200 <= status < 300 else f"HTTP {status}"


def _finish(db: Database, key: tuple[int, str], hook: WebhookConfig, error: str | None) -> None:
    with db.write() as session:
        row = session.get(EventDelivery, key)
        if row is None:
            return
        row.attempts += 1
        now = utcnow()
        if error is None:
            row.status, row.delivered_at, row.last_error = "delivered", now, None
            return
        row.last_error = redact(error)[:1000]
        if row.attempts >= hook.max_attempts:
            row.status = "failed"
        else:
            delay = min(2.0**row.attempts, _MAX_BACKOFF_S)
            row.next_attempt_at = now + timedelta(seconds=delay)


def list_events(db: Database, *, limit: int = 50) -> list[dict[str, Any]]:
    """The newest events with their deliveries (status, attempts, last error)."""
    with db.read() as session:
        events = session.scalars(
            select(RegistryEvent).order_by(col(RegistryEvent.id).desc()).limit(limit)
        ).all()
        ids = [e.id for e in events]
        deliveries: dict[int, list[dict[str, Any]]] = {}
        for d in session.scalars(select(EventDelivery).where(col(EventDelivery.event_id).in_(ids))):
            deliveries.setdefault(d.event_id, []).append(
                {
                    "webhook": d.webhook,
                    "status": d.status,
                    "attempts": d.attempts,
                    "last_error": d.last_error,
                    "next_attempt_at": as_utc(d.next_attempt_at).isoformat(),
                    "delivered_at": as_utc(d.delivered_at).isoformat() if d.delivered_at else None,
                }
            )
        return [
            {
                "id": e.id,
                "delivery_id": e.delivery_id,
                "type": e.type,
                "model": e.model,
                "at": as_utc(e.at).isoformat(),
                "payload": e.payload,
                "deliveries": deliveries.get(e.id or 0, []),
            }
            for e in events
        ]
