"""Keeping secrets out of everything llmops stores or prints.

Model endpoints answer errors by echoing requests, URLs carry credentials, and keys have
well-known shapes. :class:`Redactor` replaces, in any text, the values of the environment
variables that hold keys (those a suite names in ``api_key_env`` and any variable whose name says
it is a key, token, secret or password), ``Authorization`` header values, URL credentials and
the shapes of common API keys, with ``[REDACTED]``. :func:`secret_fields` finds keys written
into configuration, which are refused with a pointer to ``api_key_env``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Mapping
from typing import Any

__all__ = ["REDACTED", "Redactor", "redact", "secret_fields", "url_credentials"]

REDACTED = "[REDACTED]"

_SECRET_NAME = re.compile(
    r"(api[_-]?key|apikey|token|secret|password|passwd|passphrase|credential|cookie"
    r"|(^|[_-])auth($|[_-])|authorization|key$|(^|[_-])(pw|pass)$|signature|^sig$|session"
    r"|(^|[_-])code$)",
    re.I,
)
_PATTERNS = [
    # Authorization headers and bearer tokens, as echoed in error bodies and logs.
    re.compile(r"(?i)(authorization[\"']?\s*[:=]\s*[\"']?)(?:bearer\s+|basic\s+)?[^\s\"',}]+"),
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{8,}"),
    # Credentials inside URLs: scheme://user:password@host
    re.compile(r"(?i)([a-z][a-z0-9+.-]*://[^/\s:@]*:)[^@\s/]+(?=@)"),
    # Shapes of well-known keys (OpenAI, Anthropic, Hugging Face, GitHub, AWS, Slack, Google).
    re.compile(r"()\b(?:sk|rk|pk)-(?:[A-Za-z0-9_-]{2,}-)?[A-Za-z0-9_-]{16,}"),
    re.compile(r"()\bhf_[A-Za-z0-9]{20,}"),
    re.compile(r"()\bgh[pousr]_[A-Za-z0-9]{20,}"),
    re.compile(r"()\bAKIA[0-9A-Z]{16}\b"),
    re.compile(r"()\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    re.compile(r"()\bAIza[0-9A-Za-z_-]{30,}"),
    # key=value / "key": "value" pairs whose key names a secret.
    re.compile(
        r"(?i)((?:api[_-]?key|access[_-]?token|secret|password)[\"']?\s*[:=]\s*[\"']?)"
        r"[^\s\"',}&]{4,}"
    ),
]
_MIN_SECRET_LEN = 6
_NOT_SECRETS = frozenset({"PWD", "OLDPWD", "PASS", "SSH_AUTH_SOCK", "XAUTHORITY"})
"""Environment variables whose names look like keys but hold paths."""


def _env_secrets(names: Iterable[str], environ: Mapping[str, str]) -> set[str]:
    wanted = set(names)
    return {
        value
        for name, value in environ.items()
        if (name in wanted or (_SECRET_NAME.search(name) and name not in _NOT_SECRETS))
        and len(value) >= _MIN_SECRET_LEN
    }


def _echoes(value: str) -> set[str]:
    r"""How a secret comes back in echoed text: as is, JSON-escaped (also with ``\/``, as PHP
    writes it), and URL-encoded."""
    import base64
    import html
    import json
    from urllib.parse import quote, quote_plus

    dumped = json.dumps(value)[1:-1]
    raw = value.encode()
    forms = {
        value, dumped, dumped.replace("/", "\\/"), json.dumps(dumped)[1:-1],
        quote(value, safe=""), quote_plus(value), quote(quote(value, safe=""), safe=""),
        json.dumps(value, ensure_ascii=True)[1:-1].replace("+", "\\u002b"),
        "".join(f"\\u{ord(c):04x}" if c in '&<>"+' else c for c in value),
        html.escape(value), value.upper(), value.lower(),
        base64.b64encode(raw).decode(), base64.urlsafe_b64encode(raw).decode(),
        base64.b64encode(raw).decode().rstrip("="),
    }  # fmt: skip
    return {f for f in forms if len(f) >= _MIN_SECRET_LEN}


class Redactor:
    """Replaces secrets in text (build once, use for many texts).

    Args:
        env_names: Environment variables known to hold keys (e.g. the suite's
            ``api_key_env``), in addition to those whose names look like keys.
        values: More exact secret values.
    """

    def __init__(
        self,
        env_names: Iterable[str] = (),
        *,
        values: Iterable[str] = (),
        environ: Mapping[str, str] | None = None,
    ) -> None:
        found = _env_secrets(env_names, os.environ if environ is None else environ)
        found.update(v for v in values if len(v) >= _MIN_SECRET_LEN)
        found = {form for value in found for form in _echoes(value)}
        ordered = sorted(found, key=len, reverse=True)  # longest first: no partial leftovers
        self._exact = re.compile("|".join(re.escape(v) for v in ordered)) if ordered else None

    def values(self, text: str) -> str:
        """``text`` with the known secret values replaced (model outputs: nothing else)."""
        if self._exact is None or not text:
            return text
        return self._exact.sub(REDACTED, text)

    def __call__(self, text: str) -> str:
        """``text`` with known values, header values, URL credentials and key shapes replaced."""
        if not text:
            return text
        text = self.values(text)
        for pattern in _PATTERNS:
            text = pattern.sub(lambda m: m.group(1) + REDACTED, text)
        return text


def _has_key_shape(text: str) -> bool:
    """Whether ``text`` holds something shaped like a key (see the patterns above)."""
    return any(pattern.search(text) for pattern in _PATTERNS)


def redact(text: str) -> str:
    """One-off redaction with the current environment (see :class:`Redactor`)."""
    return Redactor()(text)


def secret_fields(data: Any, *, prefix: str = "") -> list[str]:
    """Dotted paths of fields in plain configuration data that hold a secret: a key whose name
    says so (``api_key``, ``Authorization``, ``token`` ...) with a non-empty value, or a string
    shaped like a known API key."""
    found: list[str] = []
    if isinstance(data, Mapping):
        for key, value in data.items():
            path = f"{prefix}.{key}" if prefix else str(key)
            lowered = str(key).lower()
            names_a_variable = lowered.endswith(("_env", "envar", "_env_var"))
            named = not names_a_variable and (
                bool(_SECRET_NAME.search(lowered)) or lowered == "authorization"
            )
            if named and value not in (None, "", [], {}, False):
                found.append(path)  # whatever shape the value has: a key, a list of keys ...
            else:
                found.extend(secret_fields(value, prefix=path))
    elif isinstance(data, list | tuple):
        for i, value in enumerate(data):
            found.extend(secret_fields(value, prefix=f"{prefix}[{i}]"))
    elif isinstance(data, str) and _has_key_shape(data):
        found.append(prefix or "(value)")
    return found


def url_credentials(url: str) -> bool:
    """Whether ``url`` carries credentials: a user name or password (``scheme://user:key@``),
    or a query parameter named like a key (``?api-key=...``, ``?key=...``, ``?token=...``)."""
    from urllib.parse import parse_qsl, urlsplit

    try:
        parts = urlsplit(url)
        params = [
            pair
            for piece in (parts.query, parts.fragment, *parts.path.split(";")[1:])
            for pair in parse_qsl(piece, keep_blank_values=True)
        ]
    except ValueError:  # a URL that cannot be read cannot be shown to hold no credentials
        return "@" in url or "?" in url
    if parts.password or parts.username:
        return True
    if any(_SECRET_NAME.search(name) and value for name, value in params):
        return True
    return _has_key_shape(url)  # sk-... in the path, a bearer token ...
