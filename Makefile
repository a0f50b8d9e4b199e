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

test: setup lint
	$(BIN)/pytest $(PYTEST_ARGS)
