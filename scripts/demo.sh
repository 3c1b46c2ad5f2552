#!/usr/bin/env bash
# Sets up .venv if needed, then runs the demo experiment end to end, offline, and explains it.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/crosstask run experiments/demo.yaml --out runs/demo "$@"
.venv/bin/crosstask analyze runs/demo
