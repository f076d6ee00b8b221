#!/usr/bin/env bash
# The one GPU check (docs/llm.md "Measuring on a GPU"): LLM decode speed (benchmarks/llm_bench.py, a
# Llama-3-8B-shaped model with random weights built on the device) and the index build rate
# (benchmarks/build_bench.py, an all-mpnet-base-v2-shaped encoder, random weights), on a machine that has
# torch and CUDA but no network and none of this project's weights.
#
#   scripts/gpu_check.sh bundle   # here: build/gpu/ (~20 MB): pinned wheels (transformers, tokenizers, hub,
#                                 # safetensors, ragserve itself) and the two tokenizers; never weights
#   scripts/gpu_check.sh run OUT       # there, from the repository root with build/gpu/ beside it: the index build
#                                      # rate and the batch path (eager, compiled)
#   scripts/gpu_check.sh run-more OUT  # there: torchao int8 (and fp8 on H100/H200) at batch 1, and the in-flight table
# Each is estimated at 5-7 minutes on an H100/H200 (not timed yet: no GPU was lent to the sessions that wrote it).
set -euo pipefail
cd "$(dirname "$0")/.."
BUNDLE=build/gpu
PY=${PY:-.venv/bin/python}

bundle() {
  rm -rf "$BUNDLE" && mkdir -p "$BUNDLE/wheels" "$BUNDLE/tokenizers"
  # The pinned transformers and tokenizers with their dependencies at this project's pins (pure-python or abi3
  # wheels: they install on the GPU machine's Python whatever its minor version); numpy and torch are there.
  grep -E '^(transformers|tokenizers|huggingface-hub|safetensors|torchao)==' requirements.txt > "$BUNDLE/pins.txt"
  grep -vE '^(torch|torchserve|torch-model-archiver|numpy)==' requirements.txt | grep -E '==' > "$BUNDLE/constraints.txt"
  "$PY" -m pip download --quiet --only-binary=:all: -d "$BUNDLE/wheels" -r "$BUNDLE/pins.txt" -c "$BUNDLE/constraints.txt"
  rm -f "$BUNDLE"/wheels/numpy-*.whl
  "$PY" -m pip wheel --quiet --no-deps --no-build-isolation -w "$BUNDLE/wheels" .
  mkdir -p "$BUNDLE/tokenizers/smollm2" "$BUNDLE/tokenizers/mpnet"
  cp models/smollm2-135m-instruct/{tokenizer.json,tokenizer_config.json,chat_template.jinja} "$BUNDLE/tokenizers/smollm2/"
  cp models/all-mpnet-base-v2/{tokenizer.json,tokenizer_config.json,special_tokens_map.json,vocab.txt} \
     "$BUNDLE/tokenizers/mpnet/"
  du -sh "$BUNDLE"
}

run() {
  local out=${1:?usage: scripts/gpu_check.sh run OUT}
  # Offline: dependencies the machine already has are kept, the rest come from the bundle.
  python -m pip install --quiet --no-index --find-links "$BUNDLE/wheels" -r "$BUNDLE/pins.txt" ragserve
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python benchmarks/build_bench.py --random-weights --tokenizer "$BUNDLE/tokenizers/mpnet" --out "$out/build"
  python benchmarks/llm_bench.py --tokenizer "$BUNDLE/tokenizers/smollm2" --modes eager compiled --inflight \
    --out "$out/llm"
}

run_more() {
  local out=${1:?usage: scripts/gpu_check.sh run-more OUT}
  python -m pip install --quiet --no-index --find-links "$BUNDLE/wheels" -r "$BUNDLE/pins.txt" ragserve
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
  python benchmarks/llm_bench.py --tokenizer "$BUNDLE/tokenizers/smollm2" --modes quantized --inflight 1 16 64 \
    --out "$out/llm-more"
}

case "${1:-}" in
  bundle) bundle ;;
  run) run "${2:-}" ;;
  run-more) run_more "${2:-}" ;;
  *) echo "usage: scripts/gpu_check.sh bundle | run OUT | run-more OUT" >&2; exit 2 ;;
esac
