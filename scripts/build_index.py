#!/usr/bin/env python3
"""Build or refresh the index of a model yaml, ahead of serving: `make index` / `make refresh`.

  python scripts/build_index.py --config configs/rag-docs.yaml              # refresh and publish
  python scripts/build_index.py --config configs/rag-docs.yaml --status     # the line's versions and which is live
  python scripts/build_index.py --config configs/rag-docs.yaml --rollback   # publish the version live before this one
  python scripts/build_index.py --config configs/rag-docs.yaml --rollback 3f2a...   # or a named one
  python scripts/build_index.py --config configs/rag-docs.yaml --release    # lift a rollback's hold, then refresh
  python scripts/build_index.py --config configs/rag-docs.yaml --ray-address 10.0.0.5:6379   # embed on Ray

A refresh re-reads the source (a crawl that revalidates known pages with conditional requests, or
the local files), embeds only texts the embedding cache lacks and, when anything changed, writes a
new immutable version and publishes it: running workers swap to it within index.follow_s seconds.
The last stdout line is the live version's folder. While another refresh of the same line runs, this
one exits at once with status 75 (EX_TEMPFAIL) and says so: safe to start from cron.
A rollback holds: the version it moved away from is not published again by a refresh (the summary says
"held: ...") until the source changes or --release (`make refresh RELEASE=1`) lifts the hold.
With a Ray address (--ray-address, else $RAY_ADDRESS) the texts the cache lacks are embedded on that
cluster (Ray Data over one Encoder per worker, embedding/distributed.py); everything else stays here.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import sys
from pathlib import Path

from ragserve.config import Config, EmbeddingConfig, assignment
from ragserve.embedding.distributed import RayEncoder, connect
from ragserve.embedding.encoder import Encoder
from ragserve.index.builder import RefreshBusy, kept_note, refresh
from ragserve.index.line import CURRENT, FORMAT_VERSION, IndexLine
from ragserve.index.store import IndexStoreError, read_manifest
from ragserve.index.versions import last_refresh, rollback
from ragserve.runtime import build_device

ROOT = Path(__file__).resolve().parent.parent

EX_TEMPFAIL = 75


def status(line: IndexLine) -> None:
    """The line's versions, least recently live first (the next to be pruned on top), the last refresh's pages kept
    because their server was failing or rate-limiting, and the line's rollback holds."""
    live = line.current()
    print(f"line {line.root}: live version {live}")
    for version in line.versions():
        manifest = read_manifest(line.folder(version))
        changes = manifest.get("changes", {})
        counts = {name: len(changes.get(name, [])) for name in ("added", "changed", "removed")}
        mark = "*" if version == live else " "
        print(f"{mark} {version}  created {manifest['created']}  {manifest['count']} chunks  {json.dumps(counts)}")
    if last := last_refresh(line):
        kept = kept_note(last["kept"]) if last.get("kept") else "no page kept through a failing server"
        print(f"last refresh {last['at']} (version {last['version']}): {kept}")
    for version, hold in line.holds().items():
        print(f"held: {version} (rolled back to {hold['to']} at {hold['at']}): a refresh will not publish it again "
              "until the source changes; `make refresh RELEASE=1` (--release) lifts the hold")  # fmt: skip


def other_lines(line: IndexLine) -> None:
    """The lines beside this one in index.dir, with their format and size. Another config may serve from one, so
    nothing prunes them; a line of an older index format (left by an upgrade) is dead weight to delete by hand."""
    others = [IndexLine(p) for p in sorted(line.root.parent.iterdir()) if p != line.root and (p / CURRENT).is_file()]
    for other in others:
        version = other.current()
        try:
            fmt = read_manifest(other.folder(version)).get("identity", {}).get("format")
        except IndexStoreError:  # no readable manifest: not a line this code wrote
            fmt = None
        mib = sum(f.stat().st_size for f in other.root.rglob("*") if f.is_file()) / 2**20
        why = "this format" if fmt == FORMAT_VERSION else f"format {fmt}: no worker of this code loads it"
        print(f"other line {other.root}: live version {version}, {why}, {mib:.1f} MiB")
    if others:
        print("Nothing prunes other lines (another config may serve from one); `rm -r` a line no config uses.")


def on_device(embedding: EmbeddingConfig, device: str) -> EmbeddingConfig:
    """The embedding section for a build on device: ONNX Runtime here runs on CPU only, so torch on a GPU."""
    return embedding if device == "cpu" else dataclasses.replace(embedding, backend="torch")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", default="configs/rag-docs.yaml")
    parser.add_argument("--source", help="the same as --set corpus.source=... (URL or local path)")
    parser.add_argument("--set", type=assignment, action="append", default=[], metavar="KEY=VALUE",
                        help="change a handler setting, e.g. --set corpus.max_pages=500 (repeatable)")  # fmt: skip
    parser.add_argument("--root", type=Path, default=ROOT, help="resolve the yaml's relative paths here")
    parser.add_argument("--status", action="store_true", help="list the line's versions; change nothing")
    parser.add_argument("--rollback", nargs="?", const="", metavar="VERSION", help="publish an earlier version")
    parser.add_argument("--no-publish", action="store_true", help="write the new version but leave CURRENT")
    parser.add_argument("--release", action="store_true",
                        help="lift a rollback's hold, then refresh: a held version may be published again")  # fmt: skip
    parser.add_argument("--ray-address", default=os.environ.get("RAY_ADDRESS"),
                        help="embed on this Ray cluster (host:port or auto; default $RAY_ADDRESS)")  # fmt: skip
    parser.add_argument("--ray-workers", type=int, help="Encoder actors on the cluster (default: one per node)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    changes = dict(args.set) | ({"corpus.source": args.source} if args.source else {})
    cfg = Config.from_yaml(args.config, args.root, changes)
    line = IndexLine.of(cfg)
    if args.status:
        status(line)
        other_lines(line)
        return
    if args.rollback is not None:
        version = rollback(line, args.rollback or None)
        print(f"rolled back: {version} is live; workers swap within {cfg.index.follow_s} s; the version it replaced "
              "is held until the source changes (`make refresh RELEASE=1` lifts that)", file=sys.stderr)  # fmt: skip
    else:
        # Eager: compiling would add minutes and change nothing in the vectors beyond float rounding. On a GPU
        # (runtime.device auto), float16 (embedding.dtype auto) in token-budget batches (embedding.batch_tokens).
        # Built only when some text is not in the embedding cache.
        eager = dataclasses.replace(cfg.compile, enabled=False)

        def encoder() -> Encoder | RayEncoder:
            if args.ray_address:
                device = connect(args.ray_address, cfg.runtime)  # auto: CUDA if the cluster has GPUs
                return RayEncoder(on_device(cfg.embedding, device), eager, device, args.ray_workers)
            device = build_device(cfg.runtime)
            return Encoder(on_device(cfg.embedding, device), eager, device)

        try:
            report = refresh(cfg, encoder, publish_it=not args.no_publish, release=args.release)
        except RefreshBusy as err:
            print(f"not refreshing: {err}", file=sys.stderr)
            sys.exit(EX_TEMPFAIL)
        print(report.summary(), file=sys.stderr)
    print(line.folder(line.current()))


if __name__ == "__main__":
    main()
