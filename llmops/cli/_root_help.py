"""The root help (``llmops --help``, bare ``llmops``) as typer renders it at 80 columns or more.

Printing it takes no imports: rendering it means importing every command module and building
every command's parameters (~200 ms of a 0.3 s start). ``tests/cli/test_startup.py`` checks that
it equals what typer renders now; after changing a command's help, regenerate it with
``python -m llmops.cli._root_help``.
"""

from __future__ import annotations

__all__ = ["ROOT_HELP", "render"]

ROOT_HELP = """\
Usage: llmops [OPTIONS] COMMAND [ARGS]...

  llmops: prompts, fine-tuning, artifacts, evals, a registry and serving for
  LLM teams.

Options:
  -w, --workspace <str>  Workspace folder (else $LLMOPS_WORKSPACE, else the
                         nearest llmops.toml upward).
  --debug                Show tracebacks on errors.
  -v, --verbose          Also other libraries' progress bars and deprecation
                         warnings.
  --version              Print the version.
  --install-completion   Install completion for the current shell.
  --show-completion      Show completion for the current shell, to copy it or
                         customize the installation.
  --help                 Show this message and exit.

Commands:
  init       Create a workspace: llmops.toml, example...
  train      Run a fine-tuning recipe: data gate, training with...
  lineage    Everything a model version, training run or eval run came...
  app        Open the dashboard: eval comparisons, human review, prompts,...
  prompts    Versioned prompts: push files, label versions, render, diff.
  artifacts  Content-addressed artifacts: models, adapters, checkpoints,...
  models     Model registry: versions, eval-gated promotions, approvals,...
  data       Datasets: check them before training.
  recipes    Fine-tuning recipes: validate before running.
  runs       Training runs: list and inspect.
  eval       Evaluation: suites, judged runs, comparisons and CI gates.
  review     Human review: pairwise and single-answer labels, agreement,...
  serve      Serving backends: vLLM or the local server, started from the...
  gateway    The OpenAI-compatible gateway in front of the backends (and...
  traffic    Traffic policies: stable and candidate arms, weights, sticky...
  canary     Canaries: step a candidate's weight up while it holds up on...
  pipeline   Pipelines: prompts, data, training, evals and promotion as...
"""


def render() -> str:
    """The root help as typer renders it (imports and builds every command)."""
    import contextlib
    import io
    import os

    from llmops.cli.app import build

    out = io.StringIO()
    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "80"
    try:
        with contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
            build()(args=["--help"], prog_name="llmops")
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved
    return out.getvalue()


if __name__ == "__main__":
    import pathlib

    path = pathlib.Path(__file__)
    source = path.read_text()
    text = render().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    start = source.index('ROOT_HELP = """')
    end = source.index('"""', start + len('ROOT_HELP = """')) + 3
    path.write_text(source[:start] + 'ROOT_HELP = """\\\n' + text + '"""' + source[end:])
    print(f"wrote {path}")
