#!/usr/bin/env python3
"""Train a query adapter on the live index's own pairs: `make adapt`.

  python scripts/adapt.py --config configs/rag-docs.yaml                    # train, report, write
  python scripts/adapt.py --config configs/rag-docs.yaml --epochs 4 --out index/adapters/mine.safetensors
  python scripts/adapt.py --config configs/rag-docs.yaml --set corpus.split=structure   # another line's index

Reads the chunks of the config's live index version (build it first: `make index`), pairs each with its
heading path or page title (embedding/adapter.py corpus_pairs: stand-ins for questions, not questions),
embeds the query side through the embedding cache (the chunk side is already there), trains a linear map
on question vectors, prints held-out recall@1/@10 of the pairs before (identity) and after, and writes
<index.dir>/adapters/<line>-<adapter identity>.safetensors (or --out). Serve or evaluate it with
retrieval.query_adapter set to that file (`make eval` with a variant `retrieval: {query_adapter: ...}`
says whether it helps real questions). The last stdout line is the adapter's path.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ragserve.config import Config, config_arguments
from ragserve.embedding.adapter import TrainSettings, corpus_pairs, train_adapter
from ragserve.embedding.cache import EmbeddingCache, cache_key
from ragserve.embedding.encoder import Encoder
from ragserve.index.line import IndexLine, line_key, read_jsonl
from ragserve.runtime import build_device

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    config_arguments(parser, ROOT, "corpus.split=structure")
    parser.add_argument("--out", type=Path, help="adapter file (.safetensors or .npz); default under index.dir")
    defaults = TrainSettings()
    for name in ("epochs", "batch_size", "lr", "temperature", "identity_pull", "heldout", "hidden", "seed"):
        value = getattr(defaults, name)
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value, help=f"default {value}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    cfg = Config.from_yaml(args.config, args.root, dict(args.set))
    line = IndexLine.of(cfg)
    version = line.current()
    if version is None:
        sys.exit(f"no live index version at {line.root}: build it first with `make index` (same --config/--set)")
    queries, chunks = corpus_pairs(read_jsonl(line.folder(version) / "chunks.jsonl"))
    print(f"version {version}: {len(queries)} pairs, {len(set(queries))} distinct queries", file=sys.stderr)

    def encoder() -> Encoder:  # only for the query texts the cache lacks, eager as the build embeds
        device = build_device(cfg.runtime)
        embedding = cfg.embedding if device == "cpu" else dataclasses.replace(cfg.embedding, backend="torch")
        return Encoder(embedding, dataclasses.replace(cfg.compile, enabled=False), device)

    cache = EmbeddingCache(Path(cfg.index.dir) / "embed-cache" / f"{cache_key(cfg.embedding)}.sqlite", encoder)
    try:
        query_vecs, chunk_vecs = cache.embed(queries), cache.embed(chunks)
    finally:
        cache.close()
    settings = TrainSettings(**{f.name: getattr(args, f.name) for f in dataclasses.fields(TrainSettings)})
    adapter, metrics = train_adapter(query_vecs, chunk_vecs, settings)
    adapter.metadata.update(
        line=line_key(cfg), version=version, embedding=cache_key(cfg.embedding), metrics=metrics.to_json()
    )
    out = adapter.save(args.out or Path(cfg.index.dir) / "adapters" / f"{line_key(cfg)}-{adapter.identity}.safetensors")
    print(metrics.summary(), file=sys.stderr)
    print(
        f"query adapter {adapter.identity} written. Use it: `--set retrieval.query_adapter={out}` (scripts, eval), "
        "or `retrieval: {query_adapter: <its path relative to the archive folder>}` in the model yaml; "
        "`make eval` with it as a variant says whether real questions gain",
        file=sys.stderr,
    )
    print(out)


if __name__ == "__main__":
    main()
