#!/usr/bin/env python3
"""Index build rate: chunks embedded per second by the project's Encoder, on this machine's device.

  .venv/bin/python benchmarks/build_bench.py                       # the real all-mpnet-base-v2 (models/)
  python benchmarks/build_bench.py --random-weights --tokenizer DIR   # a GPU machine without the weights

The texts are the default corpus's chunks (corpus/ragserve-docs, 1,000 characters, as `make index` cuts
them), repeated to --chunks. The Encoder runs as scripts/build_index.py runs it: eager, on runtime.device
auto (CUDA when present, float16 there: embedding.dtype auto), in batches of --batch-tokens padded
tokens (embedding.batch_tokens; 0: 16 texts a batch, the CPU default). --random-weights builds an
all-mpnet-base-v2-shaped MPNet (12 layers, hidden 768) on the device, for machines the weights cannot
reach (the speed is the same; the vectors are not compared). Reports chunks/s and tokens/s, and on CUDA
the min cosine of a float16 build against a float32 build of the same weights (goal: >= 0.999).
Writes report.md and figures.json under benchmarks/results/build-<date>-<host>/.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchlib.report import Results, add_out_argument
from ragserve.config import CompileConfig, Config, EmbeddingConfig
from ragserve.embedding.encoder import Encoder
from ragserve.ingest.corpus import load_documents, split
from ragserve.runtime import build_device

ROOT = Path(__file__).resolve().parent.parent


def random_mpnet(tokenizer: Path, folder: Path) -> Path:
    """An all-mpnet-base-v2-shaped MPNet with random weights, saved with the tokenizer (no download)."""
    from transformers import AutoTokenizer, MPNetConfig, MPNetModel

    tok = AutoTokenizer.from_pretrained(tokenizer)
    config = MPNetConfig(vocab_size=len(tok), hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                         intermediate_size=3072, max_position_embeddings=514)  # fmt: skip
    torch.manual_seed(0)
    MPNetModel(config, add_pooling_layer=False).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def chunk_texts(count: int, corpus: Path) -> list[str]:
    cfg = Config.from_mapping({"corpus": {"source": str(corpus)}}, ROOT)
    texts = [chunk.page_content for chunk in split(load_documents(cfg.corpus), cfg.corpus)]
    return (texts * (count // len(texts) + 1))[:count]


def timed_embed(encoder: Encoder, texts: list[str]) -> tuple[np.ndarray, float]:
    encoder.embed(texts[:64])  # first batches: allocator, kernels
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    vectors = encoder.embed(texts)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return vectors, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chunks", type=int, default=20_000 if torch.cuda.is_available() else 300)
    parser.add_argument("--batch-tokens", type=int, default=32_768 if torch.cuda.is_available() else 0)
    parser.add_argument("--random-weights", action="store_true", help="an all-mpnet-shaped model, random weights")
    parser.add_argument("--tokenizer", type=Path, default=ROOT / "models" / "all-mpnet-base-v2")
    parser.add_argument("--corpus", type=Path, default=ROOT / "corpus" / "ragserve-docs")
    add_out_argument(parser, "build")
    args = parser.parse_args()
    results = Results.create("build", args.out)
    device = build_device(Config().runtime)
    with tempfile.TemporaryDirectory() as tmp:
        model = random_mpnet(args.tokenizer, Path(tmp)) if args.random_weights else args.tokenizer
        cfg = EmbeddingConfig(model_path=str(model), backend="torch", batch_tokens=args.batch_tokens)
        texts = chunk_texts(args.chunks, args.corpus)
        encoder = Encoder(cfg, CompileConfig(enabled=False), device)
        vectors, seconds = timed_embed(encoder, texts)
        tokens = sum(encoder.count_tokens(texts))
        figures = {
            "device": torch.cuda.get_device_name() if device == "cuda" else "CPU",
            "weights": "random" if args.random_weights else "real",
            "dtype": "float16" if device == "cuda" else "float32",
            "batch_tokens": args.batch_tokens,
            "chunks": len(texts),
            "tokens": tokens,
            "seconds": seconds,
            "chunks_per_s": len(texts) / seconds,
            "tokens_per_s": tokens / seconds,
        }
        if device == "cuda":  # the same weights in float32: the vectors a CPU worker's build would give
            full = Encoder(dataclasses.replace(cfg, dtype="float32"), CompileConfig(enabled=False), device)
            reference = full.embed(texts[:2000])
            figures["min_cosine_vs_float32"] = float(np.min(np.sum(vectors[:2000] * reference, axis=1)))
    lines = [f"# Index build rate ({figures['device']})", "", "| key | value |", "|---|---|"]
    lines += [f"| {key} | {value:.4g} |" if isinstance(value, float) else f"| {key} | {value} |"
              for key, value in figures.items()]  # fmt: skip
    results.write_json("figures.json", figures)
    print(results.write_report("\n".join(lines)))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
