# Set-up is part of both commands: `make serve` and `make test` work on a fresh clone.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
HOST    ?= 127.0.0.1
PORT    ?= 8000
DATA    ?= ./data

.PHONY: setup serve test lint bench clean

setup: $(STAMP) node_modules/.package-lock.json

# torch==2.13.0 first: the CPU wheel. Any other spec would pull a multi-GB CUDA build.
$(STAMP): pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e ".[dev,postgres,ray]"
	touch $(STAMP)

node_modules/.package-lock.json: package.json package-lock.json
	npm ci --no-audit --no-fund

serve: setup
	$(BIN)/python -m app serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

test: lint
	node --test tests/js/
	$(BIN)/python -m pytest -q

lint: setup
	$(BIN)/ruff check app tests bench
	$(BIN)/hadolint Dockerfile

bench: setup
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/server.py

clean:
	rm -rf $(VENV) node_modules
