#!/usr/bin/env bash
# Installs Debian's Chromium (/usr/bin/chromium), which the browser tests drive with Playwright
# (`pytest -m browser`). Playwright's own browser download does not work on these machines,
# so the browser comes from the distribution. Safe to run again: nothing happens when
# /usr/bin/chromium is already there.
set -euo pipefail
log() { printf '[setup-browser] %s\n' "$*" >&2; }

if [ -x /usr/bin/chromium ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "no apt-get here: install Chromium so that /usr/bin/chromium exists, or skip the browser tests (pytest -m 'not browser')"
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  log "installing Chromium needs root: run 'sudo apt-get update && sudo apt-get install -y chromium', or skip the browser tests (pytest -m 'not browser')"
  exit 1
fi
log "installing Debian's chromium (for the browser tests)"
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -qq || ! "${sudo[@]}" apt-get install -y -qq chromium >/dev/null; then
  log "could not install the Debian package chromium; the browser tests (pytest -m browser) cannot run"
  exit 1
fi
log "Chromium installed: $(/usr/bin/chromium --version 2>/dev/null || echo /usr/bin/chromium)"
