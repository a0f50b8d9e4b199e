# The two commands of the README: `make run` sets up what is missing and runs the gateway;
# `make test` sets up what is missing and runs every check CI runs.
.PHONY: run test setup lint unit

VENV := .venv
BIN := $(VENV)/bin

setup:
	@bash scripts/setup.sh

run: setup
	$(BIN)/comfygate serve --config config/local-cpu.toml $(ARGS)

lint:
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/ruff format --check src tests bench scripts
	$(BIN)/mypy

test: setup lint
	$(BIN)/pytest $(PYTEST_ARGS)
