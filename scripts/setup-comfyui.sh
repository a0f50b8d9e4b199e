#!/usr/bin/env bash
# Installs the local CPU ComfyUI that `comfygate serve` manages when no backend is configured,
# and the tiny random SD 1.5 checkpoint the tests (and a newcomer's first txt2img) use: what
# `comfygate comfyui install` does (src/comfygate/comfy/install.py), which a pip-installed
# gateway runs the same way. Each step checks whether it is done, so a second run costs a
# second. COMFYGATE_COMFYUI_HOME moves it (default ~/.cache/comfygate/comfyui).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/comfygate ]; then
  printf '[setup-comfyui] no .venv/bin/comfygate: run scripts/setup.sh first\n' >&2
  exit 1
fi
exec .venv/bin/comfygate comfyui install "$@"
