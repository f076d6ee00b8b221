#!/usr/bin/env python3
"""Build (or reuse) the FAISS index for a model yaml, ahead of serving: `make index`.

  python scripts/build_index.py --config configs/rag-docs.yaml   # prints the index folder

Runs the same Index.load_or_build the handler runs, so the archive can ship the result and
workers load it instead of crawling. Embedding runs eager here: compiling would add minutes
and change nothing in the vectors beyond float rounding.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "handlers"))

from ragserve.config import Config  # noqa: E402
from ragserve.embeddings import Encoder  # noqa: E402
from ragserve.index import Index, index_key  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/rag-docs.yaml")
    parser.add_argument("--source", help="override corpus.source (URL or local path)")
    parser.add_argument("--root", type=Path, default=ROOT, help="resolve the yaml's relative paths here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    cfg = Config.from_yaml(args.config, root=args.root)
    if args.source:
        cfg = dataclasses.replace(cfg, corpus=dataclasses.replace(cfg.corpus, source=args.source)).resolve(args.root)
    start = time.perf_counter()
    encoder = Encoder(cfg.embedding, dataclasses.replace(cfg.compile, enabled=False))
    index = Index.load_or_build(cfg, encoder)
    folder = Path(cfg.index.dir) / index_key(cfg)
    print(f"index {folder}: {len(index)} chunks, ready in {time.perf_counter() - start:.1f} s", file=sys.stderr)
    print(folder)


if __name__ == "__main__":
    main()
