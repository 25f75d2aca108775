# Two entry points: `make run` (the main job) and `make test`. Both create .venv and install
# the project into it first, so a fresh machine with Python >= 3.11 needs nothing else.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: run test test-slow lint clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[test,postgres,mnist,grpc]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/effsearch search experiments/quickstart.py
	$(BIN)/effsearch front quickstart

# The fast tier (about 13 minutes on 2 cores); `test-slow` adds subprocess workers, kills,
# PostgreSQL and multi-training tests. CI runs both.
test: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2 -m "not slow"

test-slow: $(BIN)/.installed
	$(BIN)/python -m pytest -n 2 -m slow

lint: $(BIN)/.installed
	$(BIN)/ruff check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis .ruff_cache *.egg-info
