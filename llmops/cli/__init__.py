"""The ``llmops`` command line: a thin typer app over the Python API.

Conventions (DESIGN.md section 3): ``--json`` prints one JSON document on stdout and nothing else
there; exit code 0 on success, 1 when a check or gate failed, 2 on bad input; errors are one line on
stderr, and ``--debug`` adds the traceback.
"""

from llmops.cli._main import main

__all__ = ["main"]
