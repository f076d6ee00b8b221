#!/usr/bin/env bash
# Open WebUI in front of the running TorchServe, offline, on loopback (README "Open WebUI").
#   scripts/webui.sh install     build/webui-venv: CPU torch, then requirements-webui.txt (once)
#   scripts/webui.sh             serve it on http://127.0.0.1:$WEBUI_PORT (default 3000), in the foreground
# Chat goes to the LLM endpoint's OpenAI routes (models `llm` and `llm-rag`: grounded, with a Sources button); the
# documents a user uploads are embedded by the RAG endpoint's v1/embeddings, not by a model Open WebUI downloads.
# Environment: INFERENCE_URL (http://127.0.0.1:8080), KEY (TorchServe's inference key: key_file.json through
# scripts/tsclient.py key), WEBUI_PORT, WEBUI_DATA (build/webui-data: its SQLite database and uploads).
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=build/webui-venv

if [ "${1:-}" = install ]; then
  test -x $VENV/bin/python || "$(scripts/find_python.sh)" -m venv $VENV
  $VENV/bin/python -m pip install --quiet --upgrade pip
  # Open WebUI pulls sentence-transformers and so torch: the CPU build first, as scripts/install_torch.sh does
  # (PyPI's torch is a CUDA build of several GB), from pip's configured indexes, else PyTorch's own.
  torch="torch==$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' requirements.txt)+cpu"
  $VENV/bin/python -m pip install --quiet "$torch" 2>/dev/null \
    || $VENV/bin/python -m pip install --quiet "$torch" --extra-index-url https://download.pytorch.org/whl/cpu
  $VENV/bin/python -m pip install --quiet -r requirements-webui.txt
  exit 0
fi

INFERENCE_URL=${INFERENCE_URL:-http://127.0.0.1:8080}
KEY=${KEY:-$(.venv/bin/python scripts/tsclient.py key)}
WEBUI_PORT=${WEBUI_PORT:-3000}
export DATA_DIR=${WEBUI_DATA:-$PWD/build/webui-data}
mkdir -p "$DATA_DIR"

# Connections. Chat: the LLM endpoint only (the RAG endpoint's /models would list its embedding model as a chat
# model). Open WebUI's own document embeddings: the RAG endpoint, as an OpenAI embeddings server.
export ENABLE_OPENAI_API=True OPENAI_API_BASE_URLS="$INFERENCE_URL/predictions/llm/1.0/v1" OPENAI_API_KEYS="$KEY"
export RAG_EMBEDDING_ENGINE=openai RAG_EMBEDDING_MODEL=all-mpnet-base-v2
export RAG_OPENAI_API_BASE_URL="$INFERENCE_URL/predictions/rag/1.0/v1" RAG_OPENAI_API_KEY="$KEY"
export RAG_EMBEDDING_BATCH_SIZE=32  # texts per embeddings request (TorchServe batches them on one encoder pass)
export ENABLE_PERSISTENT_CONFIG=False  # these variables win over settings saved in DATA_DIR by an earlier start

# Offline: nothing is fetched at start or on the first chat.
export OFFLINE_MODE=True HF_HUB_OFFLINE=1  # no Hugging Face downloads (the embedding/reranking/whisper models)
export ENABLE_OLLAMA_API=False  # no Ollama at localhost:11434 polled on every model list
export ENABLE_VERSION_UPDATE_CHECK=False ENABLE_COMMUNITY_SHARING=False
export ANONYMIZED_TELEMETRY=False DO_NOT_TRACK=True SCARF_NO_ANALYTICS=True  # chromadb, Open WebUI telemetry
export ENABLE_WEB_SEARCH=False ENABLE_CODE_INTERPRETER=False ENABLE_IMAGE_GENERATION=False

export CORS_ALLOW_ORIGIN="http://127.0.0.1:$WEBUI_PORT;http://localhost:$WEBUI_PORT"  # its own pages only

# A single user on loopback: no login. Its session-signing key: random, made once and kept in DATA_DIR (Open WebUI
# would write .webui_secret_key into the working folder).
if [ -z "${WEBUI_SECRET_KEY:-}" ]; then
  test -s "$DATA_DIR/secret_key" || (umask 077 && head -c 32 /dev/urandom | base64 >"$DATA_DIR/secret_key")
  WEBUI_SECRET_KEY=$(cat "$DATA_DIR/secret_key")
fi
export WEBUI_AUTH=False WEBUI_SECRET_KEY

echo "Open WebUI on http://127.0.0.1:$WEBUI_PORT (chat: $INFERENCE_URL/predictions/llm/1.0/v1; data: $DATA_DIR)"
exec $VENV/bin/open-webui serve --host 127.0.0.1 --port "$WEBUI_PORT"
