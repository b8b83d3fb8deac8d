#!/usr/bin/env bash
# The main job on the embedded defaults (SQLite, local files): set up, create a workspace, push the
# example prompts, move the production label, render, change a prompt, diff and show its history,
# then use the same registry from Python as a notebook would.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

VENV="${LLMOPS_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt -e .
export PATH="$REPO/$VENV/bin:$PATH"

WS="${1:-$REPO/demo-workspace}"
# Start from scratch each run, but only ever delete a workspace this script made.
if [ -f "$WS/.llmops-demo" ]; then rm -rf "$WS"; fi
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step llmops init "$WS"
touch "$WS/.llmops-demo"
cd "$WS"
step llmops prompts push -m "import the example prompts"
step llmops prompts label summarize@1 production
step llmops prompts render summarize@production \
  --var text="llmops keeps every prompt change as an immutable version. Labels such as production point at the version that passed review." \
  --var max_sentences=1

# A reviewer tightens the system prompt: a new version, promoted to staging first.
sed -i 's/never add facts\./never add facts. Prefer short sentences./' prompts/summarize.yaml
step llmops prompts push prompts/summarize.yaml -m "prefer short sentences"
step llmops prompts label summarize staging
step llmops prompts diff summarize@production summarize@staging
step llmops prompts history summarize
step llmops prompts list

printf '\n\033[1m$ python (notebook API)\033[0m\n'
python - <<'PY'
from llmops import Workspace

ws = Workspace.open()
prompt = ws.prompts.get("summarize", label="production")
print(repr(prompt))
messages = prompt.render(text="Registries make prompt changes reviewable.").messages
for m in messages:
    print(f"{m['role']:>6}: {m['content'].strip()}")
PY
printf '\nworkspace: %s (registry: %s)\n' "$WS" "$WS/.llmops/registry.db"
