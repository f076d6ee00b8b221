"""Where a line of index versions lives and what identifies it: the line's folder, its versions and the live one.

Public names: IndexLine, identity, line_key, corpus_key, scheme_of, windows_of, read_jsonl, CURRENT, HOLD,
FORMAT_VERSION.
Layout under index.dir (builder.py writes it, versions.py publishes, rolls back and prunes; workers only read it):

    <line>/                  one line per build identity (line_key): source, chunking, model, pooling,
                             metric, BM25 scheme and sentence windows; what a config needs, not the content
      CURRENT                the live version id (a new file renamed over the old: atomic, fsynced)
      history.jsonl          one line per publish {"version", "at", "reason"}: what rollback walks back, and
                             what orders versions for pruning (last publish)
      HOLD                   versions a rollback moved away from, {"held": [{"version", "to", "at"}]}: a refresh
                             does not publish them again until the source changes or the operator releases them
      line.lock, refresh.lock   held by every writer of CURRENT (briefly), by the running refresh (throughout)
      versions/<version>/    immutable: index.faiss, chunks.jsonl (text + metadata per chunk), sources.jsonl
                             (per page: text, content hash, HTTP validators, fetch time), bm25-<scheme>/,
                             pages/ (page record vectors and BM25), windows-<size>-<stride>/ (sentence windows) and
                             manifest.json (identity, sizes, what changed, sha256 of every file)

A version id hashes the line and every page's content hash, so the same content is the same version. Reading a
line takes no lock and writes nothing; store.py loads a version of it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from ragserve.config import Config
from ragserve.embedding.cache import model_identity
from ragserve.index.ann import ann_identity
from ragserve.index.bm25 import BM25Scheme
from ragserve.index.windows import windows_folder
from ragserve.ingest.html import EXTRACTOR_VERSION

# 4: versioned lines (CURRENT, versions/), sources.jsonl, every derived folder built with the version.
# 5: the page BM25 saved in pages/ (workers built it at every load).
FORMAT_VERSION = 5
CURRENT = "CURRENT"
HOLD = "HOLD"


def scheme_of(cfg: Config) -> BM25Scheme:
    index = cfg.index
    return BM25Scheme(
        numbers=index.bm25_numbers,
        title=index.bm25_title,
        metadata=index.bm25_metadata,
        identifiers=index.bm25_identifiers,
    )


def windows_of(cfg: Config) -> str | None:
    """The sentence-window folder this config reads, or None."""
    if not cfg.uses_windows:
        return None
    return windows_folder(cfg.index.window_sentences, cfg.index.window_stride, cfg.index.window_mode)


def identity(cfg: Config) -> dict[str, Any]:
    """Everything that changes what an index holds but the source's content (which the version id adds)."""
    corpus = dataclasses.asdict(cfg.corpus)
    corpus["source"] = cfg.corpus.source if cfg.corpus.is_url else corpus_key(cfg)
    corpus.pop("timeout_s")
    corpus.pop("robots")  # like the site itself, it decides which pages a crawl reads: a refresh, not a new line
    corpus["extractor"] = EXTRACTOR_VERSION  # stored page texts are reused on 304: a new extraction is a new line
    return {
        "corpus": corpus,
        **model_identity(cfg.embedding),
        "metric": cfg.index.metric,
        **({"ann": ann} if (ann := ann_identity(cfg.index)) else {}),
        "bm25": scheme_of(cfg).folder,
        "windows": windows_of(cfg),
        **({"window_max_chunks": cfg.index.window_max_chunks} if windows_of(cfg) else {}),
        "format": FORMAT_VERSION,
    }


def corpus_key(cfg: Config) -> str:
    """A local corpus as the path from the index store to it ("../corpus/ragserve-docs").

    Not its folder name: `/a/docs` and `/b/docs` sharing one absolute index.dir would flip one line between two
    corpora. Not its absolute path: an archive ships the yaml and links the store beside it, so the repository and
    the archive resolve both paths under another root, and the path from one to the other is what they share.
    Normalised, not resolved: the archive's `index/` is a symlink to the repository's store.
    """
    return os.path.relpath(os.path.normpath(cfg.corpus.source), os.path.normpath(cfg.index.dir))


def line_key(cfg: Config) -> str:
    return _digest(identity(cfg))


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class IndexLine:
    """One config's folder of versions, and which of them is live."""

    root: Path

    @classmethod
    def of(cls, cfg: Config) -> IndexLine:
        return cls(Path(cfg.index.dir) / line_key(cfg))

    def folder(self, version: str) -> Path:
        return self.root / "versions" / version

    def current(self) -> str | None:
        """The live version id, or None before the first build."""
        try:
            return (self.root / CURRENT).read_text().strip() or None
        except FileNotFoundError:
            return None

    def history(self) -> list[dict[str, Any]]:
        path = self.root / "history.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []

    def holds(self) -> dict[str, dict[str, Any]]:
        """Versions a rollback moved away from, by id: {"version", "to", "at"} (versions.rollback writes them)."""
        try:
            held = json.loads((self.root / HOLD).read_text())["held"]
        except FileNotFoundError:
            return {}
        return {entry["version"]: entry for entry in held}

    def versions(self) -> list[str]:
        """Complete versions (manifest written; never a build's `.<version>.<pid>.tmp` staging folder), least
        recently live first: by last publish (history.jsonl), or by when it was written if that is later (a
        version built with --no-publish, or republished before history had sub-second times)."""
        folders = [
            p
            for p in (self.root / "versions").glob("*")
            if not p.name.startswith(".") and (p / "manifest.json").is_file()
        ]
        published = {entry["version"]: datetime.fromisoformat(entry["at"]).timestamp() for entry in self.history()}
        recency = {p.name: max(published.get(p.name, 0.0), (p / "manifest.json").stat().st_mtime) for p in folders}
        return sorted(recency, key=recency.__getitem__)


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
