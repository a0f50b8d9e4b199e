#!/usr/bin/env bash
# What the benchmarks need beyond the dev install: wrk (Debian), matplotlib and gunicorn (the
# `bench` extra). Idempotent: does nothing when they are there. The tests need none of it but
# matplotlib (the load benchmark falls back to its own bounded Python load generator).
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v wrk >/dev/null 2>&1; then
    if [ "$(id -u)" = "0" ] && command -v apt-get >/dev/null 2>&1; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq wrk
    else
        echo "bench/setup.sh: wrk is missing and cannot be installed here (not root or no apt);" \
             "load.py will use its Python load generator" >&2
    fi
fi

if ! .venv/bin/python -c "import matplotlib, gunicorn" >/dev/null 2>&1; then
    .venv/bin/pip install -q -e ".[bench]"
fi
