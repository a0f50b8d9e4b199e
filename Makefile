# The two commands of the README: `make run` sets up what is missing and runs the gateway;
# `make test` sets up what is missing and runs every check CI runs.
.PHONY: run test setup lint unit

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

# The browser tests drive Debian's Chromium; only the tests need it, so only `make test`
# installs it.
test: setup lint
	@bash scripts/setup-browser.sh
	$(BIN)/pytest $(PYTEST_ARGS)
