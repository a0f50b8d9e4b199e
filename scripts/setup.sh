#!/usr/bin/env bash
# Sets up everything ComfyGate needs on a fresh machine, and nothing that is already there:
# the gateway's virtual environment (.venv, with the dev tools) and the local CPU ComfyUI
# (see setup-comfyui.sh). Safe to run again: each step checks first.
set -euo pipefail
cd "$(dirname "$0")/.."
python="${PYTHON:-python3}"
# This machine's pip configuration names local package mirrors that may be absent; pip warns
# about each on every call. The warnings say nothing about our install, so they are dropped.
quiet() { "$@" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }; }
log() { printf '[setup] %s\n' "$*" >&2; }

if [ ! -x .venv/bin/python ]; then
  log "creating .venv"
  "$python" -m venv .venv
fi
# Reinstall the project only when its declared dependencies changed.
stamp=.venv/.comfygate-deps
want="$(sha256sum pyproject.toml | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  log "installing comfygate and its dev tools into .venv"
  quiet .venv/bin/python -m pip install --quiet --disable-pip-version-check -e '.[dev]'
  printf '%s\n' "$want" > "$stamp"
fi

bash scripts/setup-comfyui.sh
