#!/usr/bin/env bash
# Installs the Debian packages only the tests need: chromium (/usr/bin/chromium, which the
# browser tests drive with Playwright; Playwright's own browser download does not work on
# these machines), redis-server (the tests start their own, on a free port, for the Redis
# rate-limit storage), nginx and openssl (tests/test_deploy.py runs deploy/nginx.conf with a
# throwaway certificate, on loopback ports), npm (for s3rver, below), systemd (for
# systemd-analyze verify of deploy/*.service; no systemd needs to run). Then the npm package
# @20minutes/s3rver 5.0.0, a real S3 API, into build/test-tools/ (tests/processes.py S3Server
# starts it on a free port). The fork, not s3rver 3.7.1: 3.7.1 checks no SigV4 signature
# (its authentication.js: "Signature version 4 calculation is unimplemented"), the fork
# checks them and presigned urls' expiry; it declares node >= 24 and runs on Debian's 20 for
# all the tests do. Safe to run again: nothing happens when all are already there.
set -euo pipefail
log() { printf '[setup-test-tools] %s\n' "$*" >&2; }
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
S3RVER=@20minutes/s3rver
S3RVER_VERSION=5.0.0
tools="$root/build/test-tools"

# s3rver, from the npm registry, pinned; nothing to do when that version is there.
install_s3rver() {
  if grep -qs "\"version\": \"$S3RVER_VERSION\"" "$tools/node_modules/$S3RVER/package.json"; then
    return 0
  fi
  log "installing $S3RVER $S3RVER_VERSION into build/test-tools (for the S3 tests)"
  mkdir -p "$tools"
  if ! npm install --prefix "$tools" --no-audit --no-fund --silent --engine-strict=false \
    "$S3RVER@$S3RVER_VERSION" >/dev/null; then
    log "could not install $S3RVER $S3RVER_VERSION with npm"
    exit 1
  fi
}

missing=()
[ -x /usr/bin/chromium ] || missing+=(chromium)
command -v redis-server >/dev/null 2>&1 || missing+=(redis-server)
# /usr/sbin is not on every user's PATH.
[ -x /usr/sbin/nginx ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)
command -v npm >/dev/null 2>&1 || missing+=(npm)
command -v systemd-analyze >/dev/null 2>&1 || missing+=(systemd)
if [ "${#missing[@]}" -eq 0 ]; then
  install_s3rver
  exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
  log "no apt-get here: install ${missing[*]} (the browser tests need /usr/bin/chromium, the Redis tests redis-server, the deploy test nginx, openssl and systemd-analyze, the S3 tests npm)"
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
install_s3rver
