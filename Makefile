# One place for the project's commands; CI runs `make test`, exactly as the README says.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install demo run test lint typecheck unit bench lock clean

# Create the virtual environment and install the locked dependencies (hash-checked).
$(STAMP): requirements/dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kryten-llm needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/kryten-llm demo

run: install
	$(BIN)/kryten-llm --config $(or $(CONFIG),config.example.json)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install
	$(BIN)/pytest -m "not nats"

# The full check: lint, types, and every test (real nats-server and HTTP servers included).
test: lint typecheck
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/run_all.py

# Re-lock after changing dependencies (needs Poetry 2 outside this venv; see README).
lock:
	poetry lock
	poetry export --all-extras -f requirements.txt -o requirements/dev.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
