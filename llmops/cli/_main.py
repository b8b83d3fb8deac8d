"""Entry point: runs the typer app and turns errors into one line and an exit code."""

from __future__ import annotations

import contextlib
import os
import sys
import traceback
import warnings
from collections.abc import Iterator
from typing import Any

from llmops.errors import LLMOpsError

__all__ = ["main"]

EXIT_OK, EXIT_CHECK_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _debug(argv: list[str]) -> bool:
    return "--debug" in argv or os.environ.get("LLMOPS_DEBUG", "") not in ("", "0")


def main(argv: list[str] | None = None) -> None:
    """Run the CLI and exit with its code."""
    sys.exit(run(sys.argv[1:] if argv is None else argv))


def run(argv: list[str]) -> int:
    """Run the CLI on ``argv`` and return the exit code (for tests and embedding)."""
    if argv in ([], ["--help"]) and _wide_enough() and not _completing():
        from llmops.cli._root_help import ROOT_HELP

        try:
            sys.stdout.write(ROOT_HELP)
            sys.stdout.flush()
        except BrokenPipeError:  # `llmops --help | head`: quiet, as click is
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            return EXIT_CHECK_FAILED
        return EXIT_OK
    argv = _hoist(argv) if argv else ["--help"]  # bare `llmops` is a request for help

    from llmops.cli._common import state
    from llmops.cli.app import build

    try:
        with _third_party_quiet(enabled="--verbose" not in argv and "-v" not in argv):
            return _run(build(_selected(argv)), argv)
    finally:
        state.close()


_QUIET_ENV = {
    "TQDM_DISABLE": "1",  # progress bars of transformers' GGUF conversion, weight loading ...
    "HF_HUB_DISABLE_PROGRESS_BARS": "1",
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
}


@contextlib.contextmanager
def _third_party_quiet(*, enabled: bool) -> Iterator[None]:
    """Other libraries' progress bars and deprecation warnings stay off the terminal unless
    ``--verbose`` (llmops shows its own progress for long steps)."""
    if not enabled:
        yield
        return
    saved = {k: os.environ.get(k) for k in _QUIET_ENV}
    os.environ.update({k: v for k, v in _QUIET_ENV.items() if saved[k] is None})
    try:
        with warnings.catch_warnings():
            for category in (DeprecationWarning, FutureWarning, UserWarning):
                warnings.filterwarnings("ignore", category=category, module=_NOT_OURS)
            yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)


_NOT_OURS = r"(?!llmops)"
"""Warnings raised from modules outside llmops (ours are meant to be seen)."""


def _hoist(argv: list[str], groups: frozenset[str] | None = None) -> list[str]:
    """Global options go anywhere on the line, as users type them: ``--debug`` and
    ``--workspace DIR`` move to the root app, and a ``--json`` typed before the command's name
    (``llmops --json prompts list``) moves after it. A ``--json`` after the command's name stays
    where it is: it may be an option's value (``-m --json``). Nothing after ``--`` moves."""
    groups = _group_names() if groups is None else groups
    end = argv.index("--") if "--" in argv else len(argv)
    head, tail = argv[:end], argv[end:]
    root: list[str] = []
    rest: list[str] = []
    json_out = False
    in_command = False
    i = 0
    while i < len(head):
        arg = head[i]
        if arg in ("--debug", "--verbose", "-v"):
            root.append(arg)
        elif arg in ("--workspace", "-w") and i + 1 < len(head):
            root += [arg, head[i + 1]]
            i += 1
        elif arg.startswith("--workspace="):
            root.append(arg)
        elif arg == "--json" and not in_command:
            json_out = True
        else:
            rest.append(arg)
            # A group name (``prompts``) leads to a command; anything else is the command.
            in_command = in_command or (not arg.startswith("-") and arg not in groups)
        i += 1
    if json_out and rest:
        rest.append("--json")
    elif json_out:  # `llmops --json` alone: let the root app say it is not an option
        root.append("--json")
    return [*root, *rest, *tail]


def _group_names() -> frozenset[str]:
    """Names of the command groups (``prompts``, ``eval`` ...), without importing them."""
    from llmops.cli.app import GROUPS

    return GROUPS


def _wide_enough() -> bool:
    """Whether typer would render help at its full 80 columns here (narrower terminals wrap)."""
    import shutil

    return shutil.get_terminal_size().columns >= 80


def _completing() -> bool:
    return any(k.startswith("_LLMOPS_COMPLETE") for k in os.environ)


_ROOT_ONLY = ("--help", "--version", "--install-completion", "--show-completion")


def _selected(argv: list[str]) -> str | None:
    """The one group or command the line names, or None when it needs the whole app: the
    root's help, completion, and lines naming no known command (its listing and "did you
    mean"). Only that group's module is imported and built: typer builds the click command of
    every command it has on each start."""
    if _completing():
        return None
    i = 0
    while i < len(argv):
        arg = argv[i]
        if arg in ("--workspace", "-w"):
            i += 2
            continue
        if arg in _ROOT_ONLY:
            return None
        if not arg.startswith("-"):
            from llmops.cli.app import NAMES

            return arg if arg in NAMES else None
        i += 1
    return None


def _run(app: Any, argv: list[str]) -> int:
    from llmops._redact import redact

    try:
        # Standalone mode: typer prints usage errors itself and exits 2.
        app(args=argv, prog_name="llmops")
    except SystemExit as exc:
        code = exc.code
        return code if isinstance(code, int) else (EXIT_OK if code is None else EXIT_BAD_INPUT)
    except LLMOpsError as exc:
        if _debug(argv):
            traceback.print_exc()
        print(f"error: {redact(exc.one_line())}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:
        from llmops._extras import hint_for

        found = hint_for(exc) if isinstance(exc, ModuleNotFoundError) else None
        if found is not None:  # a lazy import of an optional dependency
            if _debug(argv):
                traceback.print_exc()
            print(f"error: {found.one_line()}", file=sys.stderr)
            return found.exit_code
        if _debug(argv):
            traceback.print_exc()
        else:
            print(
                f"error: internal error {type(exc).__name__}: {redact(str(exc))}"
                " (rerun with --debug for the traceback and report it)",
                file=sys.stderr,
            )
        return EXIT_CHECK_FAILED
    return EXIT_OK
