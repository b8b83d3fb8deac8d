"""Gateway API keys: random secrets shown once; the database keeps only their SHA-256 (the
secrets carry 256 random bits, so a fast hash is enough), a display prefix, the logical models
they may call and a rate limit."""

from __future__ import annotations

import builtins
import hashlib
import re
import secrets
import time
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlmodel import col

from llmops.db.audit import record_event
from llmops.db.models import GatewayKey
from llmops.db.timestamps import utcnow
from llmops.errors import InputError, NotFoundError
from llmops.refs import check_name
from llmops.serve.records import ApiKey, CreatedKey

if TYPE_CHECKING:
    from llmops.db import Database

__all__ = ["KEY_PREFIX", "ApiKeys", "RateBucket", "key_digest", "parse_rate"]

KEY_PREFIX = "llmops-"
_RATE = re.compile(r"(\d{1,7})\s*/\s*(s|sec|second|m|min|minute|h|hour)")
_PER_MINUTE = {
    "s": 60,
    "sec": 60,
    "second": 60,
    "m": 1,
    "min": 1,
    "minute": 1,
    "h": 1 / 60,
    "hour": 1 / 60,
}


def key_digest(secret: str) -> str:
    """The stored form of a key."""
    return hashlib.sha256(secret.encode("utf-8", "surrogateescape")).hexdigest()


def parse_rate(text: str | int | None) -> int | None:
    """``600/min``, ``10/s``, ``1000/hour`` or a number per minute, as requests per minute.

    Raises:
        InputError: Another form, or zero.
    """
    if text is None or text == "":
        return None
    if isinstance(text, int):
        per_minute = float(text)
    else:
        match = _RATE.fullmatch(text.strip().lower())
        if text.strip().isdigit():
            per_minute = float(text.strip())
        elif match is None:
            raise InputError(
                f"rate {text!r} is not N/s, N/min or N/hour", hint="e.g. --rate 600/min"
            )
        else:
            per_minute = int(match.group(1)) * _PER_MINUTE[match.group(2)]
    if per_minute < 1:
        raise InputError(
            f"rate {text!r} allows less than one request a minute",
            hint="give at least 1/min, or no --rate for no limit",
        )
    return int(per_minute)


def _record(row: GatewayKey) -> ApiKey:
    return ApiKey(
        id=row.id,
        prefix=row.prefix,
        name=row.name,
        models=list(row.models),
        rate_per_minute=row.rate_per_minute,
        created_by=row.created_by,
        created_at=row.created_at,
        revoked_at=row.revoked_at,
    )


class ApiKeys:
    """Gateway API keys (``ws.serving.keys``). Once any key exists, the gateway requires one."""

    def __init__(self, db: Database, *, actor: str) -> None:
        self.db = db
        self.actor = actor

    def __repr__(self) -> str:
        return "ApiKeys(.create(name, models=[...], rate='600/min'), .list(), .revoke(id))"

    def create(
        self, name: str = "", *, models: Sequence[str] = (), rate: str | int | None = None
    ) -> CreatedKey:
        """A new key; its secret is in the result only.

        Args:
            name: A label for listings.
            models: Logical models it may call (empty: all).
            rate: Its rate limit per gateway replica (``600/min``).
        """
        if name:
            check_name(name, what="key name")
        scopes = [check_name(m, what="logical model name") for m in models]
        per_minute = parse_rate(rate)
        secret = KEY_PREFIX + secrets.token_urlsafe(32)
        row = GatewayKey(
            id=f"key-{uuid.uuid4().hex[:10]}",
            digest=key_digest(secret),
            prefix=secret[: len(KEY_PREFIX) + 6],
            name=name,
            models=scopes,
            rate_per_minute=per_minute,
            created_by=self.actor,
        )
        with self.db.write() as session:
            session.add(row)
            record_event(
                session,
                actor=self.actor,
                action="gateway.key.create",
                entity_type="gateway_key",
                entity_key=row.id,
                before=None,
                after={"name": name, "models": scopes, "rate_per_minute": per_minute},
            )
            session.flush()
            return CreatedKey(key=_record(row), secret=secret)

    def list(self, *, all: bool = False) -> builtins.list[ApiKey]:
        """Keys that work (``all``: also revoked ones)."""
        query = select(GatewayKey).order_by(col(GatewayKey.created_at))
        if not all:
            query = query.where(col(GatewayKey.revoked_at).is_(None))
        with self.db.read() as session:
            return [_record(r) for r in session.scalars(query).all()]

    def revoke(self, key_id: str) -> ApiKey:
        """Revoke a key (gateways stop accepting it within their refresh interval).

        Raises:
            NotFoundError: No such key.
        """
        with self.db.write() as session:
            row = session.get(GatewayKey, key_id)
            if row is None:
                raise NotFoundError(f"no API key {key_id!r}", hint="see `llmops gateway keys list`")
            if row.revoked_at is None:
                row.revoked_at = utcnow()
                session.add(row)
                record_event(
                    session,
                    actor=self.actor,
                    action="gateway.key.revoke",
                    entity_type="gateway_key",
                    entity_key=row.id,
                    before={"revoked": False},
                    after={"revoked": True},
                )
            session.flush()
            return _record(row)


class RateBucket:
    """A key's rate limit as a token bucket: ``per_minute`` tokens a minute, bursts up to
    ``per_minute`` (each gateway replica keeps its own)."""

    __slots__ = ("capacity", "per_s", "stamp", "tokens")

    def __init__(self, per_minute: int) -> None:
        self.capacity = float(per_minute)
        self.per_s = per_minute / 60.0
        self.tokens = self.capacity
        self.stamp = time.monotonic()

    def take(self) -> float:
        """0 when allowed, else seconds until a token is there."""
        now = time.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.per_s)
        self.stamp = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.per_s
