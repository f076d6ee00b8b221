#!/usr/bin/env python3
"""Make the ONNX export a model yaml's embedder runs, ahead of serving: part of `make models`.

  python scripts/export_onnx.py --config configs/rag-docs.yaml   # its embedding.precision (int8: ~40 s, once)

A serving worker never exports (build work: a float32 export takes ~30 s and an int8 one ~40 s on 2 CPUs, and a
worker that exports delays its own start); one that finds the file missing fails its start and names this
command. The export lands in the model folder's onnx/ under a name that carries the weights' fingerprint,
the torch version and the int8 recipe, so it is made once per model and never reused for other weights.
Index builds and `make archive` make it too when it is missing. Nothing happens for embedding.backend: torch.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path

from ragserve.config import Config
from ragserve.embedding.onnxrt import OnnxRunner, onnx_file

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", type=Path, required=True, help="the RAG model yaml (its handler section)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    cfg = Config.from_yaml(args.config, root=ROOT).embedding
    if cfg.backend != "onnxruntime":
        print(f"{args.config}: embedding.backend is {cfg.backend}: nothing to export")
        return 0
    start = time.perf_counter()
    OnnxRunner(cfg, threads=1)  # exports when missing (under the same lock as every other exporter), then loads
    print(f"{onnx_file(cfg)} ready in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
