"""``python -m llmops`` runs the CLI."""

from llmops.cli import main

main()
