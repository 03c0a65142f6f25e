# Set-up is part of both commands: `make serve` and `make test` work on a fresh clone. No Node
# at run time: the front-end libraries are committed under static/vendor/ (`make vendor`
# refreshes them from npm). docs/install.md says what each step installs.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
TORCH   := $(VENV)/.torch
SERVE   := $(VENV)/.installed-serve
DEV     := $(VENV)/.installed-dev
HOST    ?= 127.0.0.1
PORT    ?= 8000
DATA    ?= ./data

.PHONY: setup serve test test-install lint bench vendor wheel clean

setup: $(DEV)

# The CPU build of torch first (PyTorch's CPU index, or the default index where that cannot be
# reached): the project's range then admits it and nothing pulls the multi-GB CUDA build.
$(TORCH):
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	sh scripts/install_torch.sh $(BIN)/python -q
	touch $@

# What serving needs, and nothing more.
$(SERVE): $(TORCH) pyproject.toml
	$(BIN)/pip install -q -e .
	touch $@

# Tests, linters, and the scaled-out extras (PostgreSQL, Ray).
$(DEV): $(SERVE)
	$(BIN)/pip install -q -e ".[dev,postgres,ray]"
	touch $@

serve: $(SERVE)
	$(BIN)/dropout-playground serve --host $(HOST) --port $(PORT) --data-dir $(DATA)

test: lint
	@if command -v node >/dev/null 2>&1; then node --test tests/js/; \
	else echo "node not found: tests/js skipped (the app itself needs no Node)"; fi
	$(BIN)/python -m pytest -q -m "not install"

# The wheel alone: built, installed in a fresh virtualenv outside the repository, served from
# an empty folder with no Node on PATH (tests/test_install.py; CI runs it).
test-install: $(DEV)
	$(BIN)/python -m pytest -q -m install tests/test_install.py

lint: $(DEV)
	$(BIN)/ruff check app tests bench scripts dropout_playground.py
	$(BIN)/hadolint Dockerfile
	$(BIN)/python scripts/vendor_assets.py --check

bench: $(DEV)
	$(BIN)/python bench/engine.py
	$(BIN)/python bench/server.py

# Maintainers, after changing package.json: npm fetches the locked tarballs, the script checks
# their integrity and copies the files the app serves into static/vendor/.
vendor: $(DEV)
	$(BIN)/python scripts/vendor_assets.py

wheel: $(DEV)
	$(BIN)/pip wheel --no-deps -q -w dist .

clean:
	rm -rf $(VENV) node_modules build dist
