#!/usr/bin/env bash
# Sets up .venv if needed, then runs the whole test suite (unit tests on a tiny random model,
# plus the integration test on the real embedded model).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pytest -q "$@"
