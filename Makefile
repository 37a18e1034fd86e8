# The two commands of the README: `make demo` and `make test`.
# Everything thaw needs is installed here, into .venv, from pinned versions.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.thaw-installed

.PHONY: install demo lint check test bench clean

install: $(STAMP)

# torch goes first and alone so that nothing later can resolve a CUDA build.
$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade "pip>=24" wheel
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	touch $(STAMP)

demo: install
	$(BIN)/thaw demo

# Lint and format are part of the tests: CI runs `make test`.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The edit loop: lint, format, import contracts and the unit tier (seconds, not minutes).
check: lint
	$(BIN)/lint-imports --no-cache
	$(BIN)/python -m pytest -q tests/unit

# Two test files at a time on two cores (each file on one worker, so its servers and module
# fixtures are shared by its tests): on two cores the suite ran in 0.6 of its serial time.
test: lint
	$(BIN)/python -m pytest -n auto --dist loadfile

bench: install
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev,bench]"
	$(BIN)/python -m bench

clean:
	rm -rf .thaw .dvcstore
