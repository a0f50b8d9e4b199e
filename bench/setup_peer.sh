#!/usr/bin/env bash
# The peer users would pick: Comfy-Org's comfy-api-proxy (a local Comfy API v2 in front of
# ComfyUI) and its Python SDK comfy-sdk, in a benchmark-only venv (bench/peer-venv), so none
# of their dependencies reach the gateway's own environment. Idempotent.
set -euo pipefail
cd "$(dirname "$0")"

PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
VENV=peer-venv
PEER_PACKAGES=("comfy-api-proxy==0.1.6" "comfy-sdk==0.5.0")

if [ -x "$VENV/bin/comfy-api-proxy" ] && "$VENV/bin/python" -c "import comfy_sdk" 2>/dev/null; then
    exit 0
fi
# Both are checked to exist on PyPI first, so a failure says which one is missing.
probe="$(mktemp -d)"
trap 'rm -rf "$probe"' EXIT
for package in "${PEER_PACKAGES[@]}"; do
    if ! "$PYTHON" -m pip download -q --no-deps -d "$probe" "$package" >/dev/null; then
        echo "bench/setup_peer.sh: $package is not available from PyPI" >&2
        exit 1
    fi
done
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip
"$VENV/bin/pip" install -q "${PEER_PACKAGES[@]}"
"$VENV/bin/comfy-api-proxy" --help >/dev/null
"$VENV/bin/python" -c "import comfy_sdk; print('comfy-sdk', comfy_sdk.__version__ if hasattr(comfy_sdk, '__version__') else '')"
