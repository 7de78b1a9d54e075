# durian's tasks. Every target installs what it needs first (deploy/setup.sh).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup run test lint check bench clean

setup:
	@deploy/setup.sh

## run: the embedded stack (broker + Redis + topics) until Ctrl-C
run: setup
	@$(BIN)/python deploy/embedded/run.py

## test: the whole test suite, unit and integration, against a real broker and Redis
test: setup
	@$(BIN)/python -m pytest $(PYTEST_ARGS)

## lint: format, lint, types and import boundaries
lint: setup
	$(BIN)/ruff format --check .
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/lint-imports

check: lint test

## bench: benchmarks (print their figures)
bench: setup
	@$(BIN)/python benchmarks/goals.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
