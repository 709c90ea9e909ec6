# Vigil — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install system run test test-sqlite test-postgres fuzz lint fmt bench bench-crypto clean

help: ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-14s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP) ## Create .venv and install Vigil with its dev extras

system: ## Install the Debian packages the tests and benchmarks need (python3-venv, PostgreSQL, wrk, openssl, Chromium)
	bash scripts/install-system-packages.sh

run: install ## Set up VIGIL_HOME (TLS, database, demo dealer printed once) and serve HTTPS
	$(BIN)/vigil init
	$(BIN)/vigil serve

test: system install ## Run the whole suite on SQLite, then on a throwaway PostgreSQL
	$(MAKE) --no-print-directory test-sqlite
	$(MAKE) --no-print-directory test-postgres

test-sqlite: install
	VIGIL_TEST_DATABASE=sqlite $(BIN)/pytest -q -p no:cacheprovider

test-postgres: install
	VIGIL_TEST_DATABASE=postgres $(BIN)/pytest -q -p no:cacheprovider

fuzz: install ## Longer schemathesis pass over the OpenAPI document (200 examples per operation)
	VIGIL_FUZZ_EXAMPLES=200 $(BIN)/pytest -q -p no:cacheprovider tests/contract

screenshots: install ## Refresh docs/screenshots/ from the portal's browser tests
	VIGIL_UPDATE_SCREENSHOTS=1 $(BIN)/pytest -q -p no:cacheprovider tests/functional/portal/test_portal_browser.py

lint: install ## ruff (lint + format check) and mypy --strict
	$(BIN)/ruff check src tests bench
	$(BIN)/ruff format --check src tests bench
	$(BIN)/mypy

fmt: install ## Apply ruff's formatting and safe fixes
	$(BIN)/ruff check --fix src tests bench
	$(BIN)/ruff format src tests bench

bench: system install ## Run the benchmarks (ratios against baselines measured in the same run)
	$(BIN)/python bench/edge.py

bench-crypto: install ## Envelope and streaming encryption against raw AES-GCM (bench/crypto.py)
	$(BIN)/python bench/crypto.py

clean: ## Remove the virtualenv and local state
	rm -rf $(VENV) var .mypy_cache .ruff_cache
