"""Which arm answers a request: a deterministic, monotone split.

A request's sticky key (a header's value, or the conversation's first message) hashes with the
logical model's name to a bucket in ``[0, 10000)``; the candidate answers buckets below
``weight * 100``. Every replica computes the same bucket, a key keeps its arm while the weight
stays put, and as the weight grows keys only move from stable to candidate (buckets below the
old threshold stay below the new one). A request without a key draws a fresh bucket.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["BUCKETS", "Arm", "Sticky", "bucket", "choose", "parse_sticky"]

BUCKETS = 10_000
"""Resolution of the split: weights have two decimals (0.01 %)."""

Arm = Literal["stable", "candidate"]

_HEADER = re.compile(r"[A-Za-z0-9][A-Za-z0-9-]{0,99}")


@dataclass(frozen=True, slots=True)
class Sticky:
    """Where a request's sticky key comes from."""

    kind: Literal["header", "conversation"]
    header: str = ""
    """Lower-case header name, for ``kind == "header"``."""

    def __str__(self) -> str:
        return f"header:{self.header}" if self.kind == "header" else "conversation"

    def key(self, headers: Mapping[str, str], body: Mapping[str, Any]) -> str | None:
        """The request's key (None: the request has none and is drawn on its own)."""
        if self.kind == "header":
            return headers.get(self.header) or None
        for message in body.get("messages") or ():
            if isinstance(message, dict) and message.get("role") in ("user", "system"):
                content = message.get("content")
                return content if isinstance(content, str) else repr(content)
        return None


def parse_sticky(spec: str | None) -> Sticky | None:
    """``header:x-user-id`` or ``conversation`` (None or "" or ``none``: not sticky).

    Raises:
        ValueError: Any other form.
    """
    if spec is None or spec.strip() in ("", "none"):
        return None
    spec = spec.strip()
    if spec == "conversation":
        return Sticky("conversation")
    kind, _, header = spec.partition(":")
    if kind == "header" and _HEADER.fullmatch(header):
        return Sticky("header", header.lower())
    raise ValueError(
        f"sticky {spec!r} is not header:<name> or conversation (e.g. --sticky header:x-user-id)"
    )


def bucket(logical: str, key: str) -> int:
    """The key's bucket in ``[0, BUCKETS)`` for this logical model (the same on every replica)."""
    digest = hashlib.blake2b(f"{logical}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") % BUCKETS


def choose(
    logical: str, weight: float, key: str | None, *, rng: random.Random | None = None
) -> Arm:
    """The arm for a request: ``candidate`` for buckets below ``weight`` percent."""
    if weight <= 0:
        return "stable"
    if weight >= 100:
        return "candidate"
    b = bucket(logical, key) if key is not None else (rng or random).randrange(BUCKETS)
    return "candidate" if b < round(weight * (BUCKETS // 100)) else "stable"
