"""References: the one parser for ``name``, ``name@3``, ``name@production`` and digests.

Every part of llmops that accepts a reference (prompts now; artifacts, models and adapters later)
parses it here, so the syntax and its error messages are the same everywhere.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from llmops.errors import InvalidNameError, InvalidReferenceError

__all__ = ["LATEST", "Ref", "check_label", "check_name", "parse_ref"]

LATEST = "latest"
"""The implicit label that always points at the newest version; it cannot be set or moved."""

_NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
_DIGEST_RE = re.compile(r"(sha256|blake3):([0-9a-f]{64})")
_NAME_RULE = (
    "use 1-128 characters from letters, digits, '.', '_' and '-', starting with a letter or digit"
)


def _describe(value: str) -> str:
    return repr(value) if len(value) <= 80 else repr(value[:77] + "...")


def check_name(name: str, *, what: str = "name") -> str:
    """Return ``name`` if it is a valid name, else raise.

    Names become file names and URL path segments, so path separators, spaces and control
    characters are refused.

    Raises:
        InvalidNameError: The name is empty, too long or has a forbidden character.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, got {type(name).__name__}")
    if _NAME_RE.fullmatch(name) is None:
        raise InvalidNameError(f"invalid {what} {_describe(name)}", hint=_NAME_RULE)
    return name


def check_label(label: str) -> str:
    """Return ``label`` if it can name a movable label, else raise.

    Labels follow the name rules, must not be all digits (``name@3`` means version 3) and must
    not be ``latest`` (implicit, always the newest version).

    Raises:
        InvalidNameError: The label is not allowed.
    """
    check_name(label, what="label")
    if label.isdigit():
        raise InvalidNameError(
            f"invalid label {label!r}: an all-digit label would read as a version number",
            hint="choose a label with at least one letter, such as 'production'",
        )
    if label == LATEST:
        raise InvalidNameError(
            "'latest' is implicit and always points at the newest version",
            hint="choose another label name",
        )
    return label


@dataclass(frozen=True, slots=True)
class Ref:
    """A parsed reference.

    Exactly one form is set: ``name`` alone (latest), ``name`` + ``version``, ``name`` + ``label``,
    or ``digest`` (``algorithm:hex``).
    """

    name: str | None = None
    version: int | None = None
    label: str | None = None
    digest: str | None = None

    @property
    def kind(self) -> Literal["latest", "version", "label", "digest"]:
        """Which form this reference takes."""
        if self.digest is not None:
            return "digest"
        if self.version is not None:
            return "version"
        if self.label is not None:
            return "label"
        return "latest"

    def __str__(self) -> str:
        if self.digest is not None:
            return self.digest
        if self.version is not None:
            return f"{self.name}@{self.version}"
        if self.label is not None:
            return f"{self.name}@{self.label}"
        return str(self.name)


def parse_ref(text: str) -> Ref:
    """Parse a reference string.

    Accepted forms: ``name`` (the latest version), ``name@latest``, ``name@3`` (a version number),
    ``name@production`` (a label or alias), ``sha256:<64 hex>`` and ``blake3:<64 hex>`` (digests).

    Raises:
        InvalidReferenceError: The text is none of those forms.
    """
    if not isinstance(text, str):
        raise TypeError(f"reference must be a str, got {type(text).__name__}")
    forms = "expected NAME, NAME@VERSION, NAME@LABEL or sha256:<64 hex digits>"
    digest = _DIGEST_RE.fullmatch(text)
    if digest is not None:
        return Ref(digest=text)
    if text.startswith(("sha256:", "blake3:")):
        raise InvalidReferenceError(
            f"invalid digest reference {_describe(text)}",
            hint="a digest is the algorithm, a colon and 64 lowercase hex digits",
        )
    name, sep, selector = text.partition("@")
    try:
        check_name(name)
    except InvalidNameError as exc:
        raise InvalidReferenceError(
            f"invalid reference {_describe(text)}: {exc.message}", hint=f"{forms}; {_NAME_RULE}"
        ) from None
    if not sep:
        return Ref(name=name)
    if selector == LATEST:
        return Ref(name=name)
    if selector.isdigit() and selector.isascii():
        version = int(selector)
        if version < 1:
            raise InvalidReferenceError(
                f"invalid reference {_describe(text)}: versions start at 1", hint=forms
            )
        return Ref(name=name, version=version)
    if _NAME_RE.fullmatch(selector) is None:
        raise InvalidReferenceError(
            f"invalid reference {_describe(text)}: {selector!r} after '@' is neither a version"
            " number nor a label",
            hint=forms,
        )
    return Ref(name=name, label=selector)


def local_path(path: str | os.PathLike[str], root: Path | None) -> Path:
    """The one rule for relative file paths given to the API and the CLI: from the current
    folder when the file is there, else from ``root`` (the workspace root) when it is there;
    otherwise the current folder's (so "no such file" names what the user typed)."""
    p = Path(path)
    if p.is_absolute() or p.exists() or root is None:
        return p
    under_root = root / p
    return under_root if under_root.exists() else p
