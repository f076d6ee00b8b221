"""Vectors that belong to chunks or pages: one owner per vector, the best vector speaks for its owner.

Public names: VectorSet, embed_with_progress.
Page records (pages.py) and sentence windows (windows.py) both embed several short texts per
owner and score an owner by its best one. Saved as two numpy files beside the index (no pickle).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ragserve.embedding.progress import progress_bar

if TYPE_CHECKING:
    from ragserve.embedding.cache import EmbeddingCache
    from ragserve.embedding.encoder import Encoder

logger = logging.getLogger(__name__)
PROGRESS_EVERY = 128  # texts per encoder call, the bar moving after each: a build embeds thousands, for minutes


def embed_with_progress(encoder: Encoder | EmbeddingCache, texts: Sequence[str], what: str) -> np.ndarray:
    """(len(texts), dim) float32 vectors, under a progress bar "embedding <what>" (progress.py)."""
    if not texts:
        return np.empty((0, encoder.dimension), np.float32)
    parts = []
    with progress_bar(len(texts), f"embedding {what}") as bar:
        for start in range(0, len(texts), PROGRESS_EVERY):
            parts.append(encoder.embed(list(texts[start : start + PROGRESS_EVERY])))
            bar.update(len(parts[-1]))
    return np.concatenate(parts).astype(np.float32)


@dataclass
class VectorSet:
    """vectors (n, dim), unit length; owner (n,): the owner position of each vector, ascending."""

    vectors: np.ndarray
    owner: np.ndarray

    def __post_init__(self) -> None:
        # owner is ascending (vectors are embedded owner by owner): each owner's run starts once, here,
        # not on every query
        self._owners, self._run_starts, counts = np.unique(self.owner, return_index=True, return_counts=True)
        self._run_ends = self._run_starts + counts

    def save(self, folder: Path) -> list[Path]:
        folder.mkdir(parents=True, exist_ok=True)
        np.save(folder / "vectors.npy", self.vectors)
        np.save(folder / "owner.npy", self.owner)
        return [folder / "owner.npy", folder / "vectors.npy"]

    @classmethod
    def load(cls, folder: Path, mmap: bool = False):  # noqa: ANN206 - the subclass
        """mmap: map the vectors read-only, so the workers of a node share one copy."""
        return cls(
            np.load(folder / "vectors.npy", mmap_mode="r" if mmap else None, allow_pickle=False),
            np.load(folder / "owner.npy", allow_pickle=False),
        )

    def best_of(self, query: np.ndarray, owners: Sequence[int]) -> np.ndarray:
        """(len(owners),): each listed owner's best cosine with one query, reading only their vectors (-1 for an
        owner without vectors). A search that rescores its candidates costs their vectors, not the whole set's."""
        best = np.full(len(owners), -1.0, dtype=np.float32)
        slots = np.searchsorted(self._owners, np.asarray(owners, dtype=np.int64))
        slots = np.minimum(slots, max(len(self._owners) - 1, 0))
        present = np.flatnonzero(self._owners[slots] == np.asarray(owners)) if len(self._owners) else []
        if len(present) == 0:
            return best
        starts, ends = self._run_starts[slots[present]], self._run_ends[slots[present]]
        rows = np.concatenate([np.arange(a, b) for a, b in zip(starts, ends, strict=True)])
        similarity = np.asarray(self.vectors)[rows] @ query  # fancy indexing: a mapped file reads these rows only
        best[present] = np.maximum.reduceat(similarity, np.concatenate([[0], np.cumsum(ends - starts)[:-1]]))
        return best

    def best(self, queries: np.ndarray, owners: int) -> np.ndarray:
        """(n queries, owners): each owner's best cosine with each query; -1 for an owner without vectors."""
        best = np.full((len(queries), owners), -1.0, dtype=np.float32)
        if len(self.owner) == 0:
            return best
        similarity = queries @ np.asarray(self.vectors).T  # (n, vectors)
        best[:, self._owners] = np.maximum.reduceat(similarity, self._run_starts, axis=1)
        return best
