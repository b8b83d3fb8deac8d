"""Entry point: runs the typer app and turns errors into one line and an exit code."""

from __future__ import annotations

import os
import sys
import traceback
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
    from llmops.cli._common import state
    from llmops.cli.app import app

    if "--debug" in argv:  # accepted anywhere, as users type it: hoist it to the root app
        argv = ["--debug", *[a for a in argv if a != "--debug"]]
    try:
        return _run(app, argv)
    finally:
        state.close()


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
