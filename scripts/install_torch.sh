#!/usr/bin/env bash
# Install the pinned torch into the venv, in the build this host needs, and say which.
#   scripts/install_torch.sh [auto|cpu|cuda]      (make install TORCH=...; default auto)
# auto = cpu on every host: the RAG endpoint is a CPU service (Graviton), and a CUDA build is several
# GB of wheels. Ask for cuda (TORCH=cuda, CUDA tag TORCH_CUDA, default cu130) on the LLM's GPU host.
# Why not plain `pip install torch==X`: PyPI's x86_64 and aarch64 wheels of torch 2.13 are CUDA builds;
# the CPU build is `X+cpu` on the PyTorch CPU index.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
variant=${1:-auto}
version=$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' requirements.txt)
cuda=${TORCH_CUDA:-cu130}
if [ "$variant" = auto ]; then
  variant=cpu
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "torch: a GPU is present; installing the CPU build anyway (for the LLM host: make install TORCH=cuda)"
  fi
fi
case "$variant" in
  cpu) wanted="$version+cpu" index=https://download.pytorch.org/whl/cpu ;;
  cuda) wanted="$version+$cuda" index=https://download.pytorch.org/whl/$cuda ;;
  *) echo "TORCH must be auto, cpu or cuda, not '$variant'" >&2; exit 2 ;;
esac
echo "torch: installing torch==$wanted ($variant build) for $(uname -m); override with make install TORCH=cpu|cuda"
# pip's configured indexes first (a local wheel mirror may carry the build), then PyTorch's own index.
if ! $PY -m pip install --quiet "torch==$wanted" 2>/dev/null; then
  echo "torch: not on pip's configured indexes; using $index"
  $PY -m pip install --quiet "torch==$wanted" --extra-index-url "$index"
fi
$PY -c 'import torch; print("torch:", torch.__version__, "installed, CUDA:", torch.version.cuda or "none")'
