#!/usr/bin/env bash
# Set up (scripts/setup.sh), check the code (ruff lint and format, mypy), then run every test
# tier: the fast tier and the real tier (real vLLM engines, a real vLLM server). Extra
# arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
echo "[test] ruff (lint, format) and mypy"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
.venv/bin/mypy
exec .venv/bin/python -m pytest "$@"
