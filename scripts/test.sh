#!/usr/bin/env bash
# Set up (scripts/setup.sh) and run every test tier: the fast tier and the real tier
# (real vLLM engines, a real vLLM server). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/python -m pytest "$@"
