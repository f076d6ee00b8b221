"""Metadata filters on retrieval: which chunks a question may retrieve, decided before the top-k.

Public names: Filter, ChunkTable.
A Filter holds source prefixes (a chunk's URL or path starts with one of them), an inclusive
`published` date range (YYYY-MM-DD; a chunk whose page states no date does not pass a date bound)
and tags (the page has at least one of them, compared case-insensitively). An empty Filter passes
everything. ChunkTable holds one index version's chunk metadata as arrays, so a filter becomes a
boolean mask over chunk positions in one vectorised pass; retrieval.py restricts every candidate
source (FAISS, BM25, windows, pages) to it, so k results come back whenever k chunks match.
No faiss or torch import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from langchain_core.documents import Document


@dataclass(frozen=True)
class Filter:
    source_prefix: tuple[str, ...] = ()
    published_after: str | None = None  # inclusive, YYYY-MM-DD
    published_before: str | None = None  # inclusive, YYYY-MM-DD
    tags: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.source_prefix or self.published_after or self.published_before or self.tags)


class ChunkTable:
    """The filterable metadata of an index's chunks, by position."""

    def __init__(self, chunks: Sequence[Document]) -> None:
        self.sources = np.array([c.metadata.get("source", "") for c in chunks], dtype=object)
        self.published = np.array([c.metadata.get("published", "") for c in chunks], dtype=object)
        self.tags = [{t.strip().casefold() for t in c.metadata.get("tags", "").split(",") if t.strip()} for c in chunks]

    def mask(self, where: Filter) -> np.ndarray:
        """(chunks,) True where a chunk passes every condition of the filter."""
        keep = np.ones(len(self.sources), dtype=bool)
        if where.source_prefix:
            prefixes = where.source_prefix
            keep &= np.fromiter((s.startswith(prefixes) for s in self.sources), bool, len(self.sources))
        if where.published_after or where.published_before:
            low, high = where.published_after or "0000-00-00", where.published_before or "9999-99-99"
            keep &= np.fromiter((bool(p) and low <= p <= high for p in self.published), bool, len(self.sources))
        if where.tags:
            wanted = {tag.casefold() for tag in where.tags}
            keep &= np.fromiter((bool(tags & wanted) for tags in self.tags), bool, len(self.sources))
        return keep
