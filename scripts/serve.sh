#!/usr/bin/env bash
# Start TorchServe on models in model_store/ and wait until each has a ready worker.
#   scripts/serve.sh rag [llm ...]     env: THREADS=n sets OMP_NUM_THREADS for the workers
set -euo pipefail
cd "$(dirname "$0")/.."
models=("${@:-rag}")
specs=()
for m in "${models[@]}"; do  # a .mar or .tar.gz from `make archive ARCHIVE_FORMAT=...`, else the folder
  file=$m
  for suffix in .mar .tar.gz; do [ -f "model_store/$m$suffix" ] && file=$m$suffix; done
  specs+=("$m=$file")
done

if [ "$(uname -m)" = "aarch64" ]; then
  # Graviton settings from the original demo; the test harness applies the same file.
  set -a && source configs/graviton.env && set +a
  echo "aarch64: applied the Graviton settings of configs/graviton.env: $(grep -o '^[A-Z_]*' configs/graviton.env | xargs)"
fi
if [ -n "${THREADS:-}" ]; then export OMP_NUM_THREADS="$THREADS"; fi
export PATH="$PWD/.venv/bin:$PATH" LOG_LOCATION="$PWD/logs" METRICS_LOCATION="$PWD/logs"
mkdir -p logs
torchserve --stop >/dev/null 2>&1 || true
torchserve --start --ncs --model-store model_store --ts-config config.properties --models "${specs[@]}" \
  >logs/torchserve.out 2>&1
python scripts/tsclient.py wait "${models[@]}"
