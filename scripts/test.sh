#!/usr/bin/env bash
# Sets up .venv if needed, then runs the whole test suite (unit tests on a tiny random model, the
# integration test on the real embedded model, the Ray executor on a local instance), then the vllm
# backend on vLLM's CPU build in its own environment (.venv-vllm; CROSSTASK_SKIP_VLLM=1 skips it).
# Arguments go to the first pytest run, and then the vLLM part is skipped.
# The first run spreads test files over one pytest-xdist worker per core, one torch thread each
# (tests/conftest.py): most of a test's time is Python, imports and process start-ups, which one core
# runs at a time (README, "Two commands"). A file's tests share a worker, so module fixtures such as
# the local Ray instance are built once. "-n 0" among the arguments runs everything in one process.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q -n auto --dist loadfile "$@"
if [ $# -eq 0 ] && [ -z "${CROSSTASK_SKIP_VLLM:-}" ]; then
    bash scripts/setup_vllm.sh
    # The backend against the hf backend, and training with the older transformers that vLLM pins.
    .venv-vllm/bin/python -m pytest -q -p no:cacheprovider tests/test_vllm_backend.py tests/test_training.py
fi
