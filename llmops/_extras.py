"""Optional dependencies: one helper that turns a missing one into a one-line error naming the
extra that installs it (``pip install 'llmops[train]'``, exit code 2), and quiet imports of the
training stack (bitsandbytes logs a warning about optional CPU kernels on import)."""

from __future__ import annotations

import contextlib
import importlib
import importlib.util
import logging
from collections.abc import Iterator
from types import ModuleType

from llmops.errors import MissingDependencyError

__all__ = ["EXTRAS", "hint_for", "quiet_import", "require"]

EXTRAS: dict[str, str] = {
    "torch": "train",
    "transformers": "train",
    "peft": "train",
    "trl": "train",
    "datasets": "train",
    "accelerate": "train",
    "bitsandbytes": "train",
    "gguf": "train",
    "pyarrow": "train",
    "pandas": "train",
    "tensorboard": "tensorboard",
    "tokenizers": "train",
    "litellm": "eval",
    "aiohttp": "eval",
    "jsonschema": "eval",
    "boto3": "s3",
    "botocore": "s3",
    "psycopg": "postgres",
    "streamlit": "app",
}
"""Top-level module -> the llmops extra that installs it."""

_NOISY_LOGGERS = ("bitsandbytes",)


def _error(module: str, feature: str) -> MissingDependencyError:
    extra = EXTRAS.get(module, "all")
    return MissingDependencyError(
        f"{feature} needs the Python package {module!r}, which is not installed",
        hint=f"pip install 'llmops[{extra}]'",
    )


def require(*modules: str, feature: str) -> None:
    """Raise :class:`MissingDependencyError` unless every module can be imported.

    Raises:
        MissingDependencyError: One is missing; the message names the extra to install.
    """
    for module in modules:
        if importlib.util.find_spec(module) is None:
            raise _error(module, feature)


def hint_for(
    exc: ModuleNotFoundError, *, feature: str = "this command"
) -> MissingDependencyError | None:
    """The install hint for an import that failed, when the module belongs to an extra."""
    top = (exc.name or "").partition(".")[0]
    return _error(top, feature) if top in EXTRAS else None


@contextlib.contextmanager
def _quiet_loggers() -> Iterator[None]:
    saved = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in saved:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        yield
    finally:
        for name, level in saved.items():
            logging.getLogger(name).setLevel(level)


def quiet_import(module: str, *, feature: str) -> ModuleType:
    """Import ``module`` with third-party import-time warnings kept off the terminal.

    Raises:
        MissingDependencyError: It (or a package it needs) is not installed.
    """
    try:
        with _quiet_loggers():
            return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        found = hint_for(exc, feature=feature)
        if found is None:
            raise
        raise found from None
