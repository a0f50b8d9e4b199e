# The two commands of the README: `make run` sets up what is missing and runs the gateway;
# `make test` sets up what is missing and runs every check CI runs.
.PHONY: run test setup lint unit bench

VENV := .venv
BIN := $(VENV)/bin

setup:
	@bash scripts/setup.sh

run: setup
	$(BIN)/comfygate serve --config config/local-cpu.toml $(ARGS)

LINTED := src tests $(wildcard bench)

lint:
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/mypy

# The browser tests drive Debian's Chromium, the Redis tests start Debian's redis-server, the
# S3 tests s3rver (from npm, into build/test-tools/); only the tests need them, so only
# `make test` installs them.
test: setup lint
	@bash scripts/setup-test-tools.sh
	$(BIN)/pytest $(PYTEST_ARGS)

# The benchmark suite (docs/BENCHMARKS.md): wrk, matplotlib and the peer's own venv first,
# then every benchmark; results in docs/benchmarks/. `make bench BENCH_ARGS=--quick` for tiny
# sizes. The peer is optional: without it the other comparisons still run.
bench: setup
	bash bench/setup.sh
	bash bench/setup_peer.sh || echo "bench: the peer (comfy-api-proxy + comfy-sdk) is unavailable"
	$(BIN)/python -m bench.run_all $(BENCH_ARGS)
