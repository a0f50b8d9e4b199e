#!/usr/bin/env bash
# Installs the Debian packages only the tests need: chromium (/usr/bin/chromium, which the
# browser tests drive with Playwright; Playwright's own browser download does not work on
# these machines), redis-server (the tests start their own, on a free port, for the Redis
# rate-limit storage), nginx and openssl (tests/test_deploy.py runs deploy/nginx.conf with a
# throwaway certificate, on loopback ports). Safe to run again: nothing happens when all are
# already there.
set -euo pipefail
log() { printf '[setup-test-tools] %s\n' "$*" >&2; }

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# /usr/sbin is not on every user's PATH.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "no apt-get here: install ${missing[*]} (the browser tests need /usr/bin/chromium, the Redis tests redis-server, the deploy test nginx and openssl)"
  exit 1
fi
if [ "$(id -u)" -eq 0 ]; then
  sudo=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  sudo=(sudo -n)
else
  log "installing ${missing[*]} needs root: run 'sudo apt-get update && sudo apt-get install -y ${missing[*]}'"
  exit 1
fi
log "installing Debian's ${missing[*]} (for the tests)"
export DEBIAN_FRONTEND=noninteractive
if ! "${sudo[@]}" apt-get update -qq || ! "${sudo[@]}" apt-get install -y -qq "${missing[@]}" >/dev/null; then
  log "could not install the Debian packages ${missing[*]}"
  exit 1
fi
# Debian's packages may start a redis-server on 6379 and an nginx on 80 where an init system
# runs; the tests start their own and use neither.
log "installed: ${missing[*]}"
