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

if TYPE_CHECKING:
    from ragserve.embedding.encoder import Encoder

logger = logging.getLogger(__name__)
PROGRESS_EVERY = 128  # texts between progress log lines: a build embeds thousands, for minutes


def embed_with_progress(encoder: Encoder, texts: Sequence[str], what: str) -> np.ndarray:
    """(len(texts), dim) float32 vectors, logging "embedded i/n <what>" as it goes."""
    parts = []
    for start in range(0, len(texts), PROGRESS_EVERY):
        parts.append(encoder.embed(list(texts[start : start + PROGRESS_EVERY])))
        logger.info("embedded %d/%d %s", min(start + PROGRESS_EVERY, len(texts)), len(texts), what)
    return np.concatenate(parts).astype(np.float32) if parts else np.empty((0, encoder.dimension), np.float32)


@dataclass
class VectorSet:
    """vectors (n, dim), unit length; owner (n,): the owner position of each vector, ascending."""

    vectors: np.ndarray
    owner: np.ndarray

    def __post_init__(self) -> None:
        # owner is ascending (vectors are embedded owner by owner): each owner's run starts once, here,
        # not on every query
        self._owners, self._run_starts = np.unique(self.owner, return_index=True)

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

    def best(self, queries: np.ndarray, owners: int) -> np.ndarray:
        """(n queries, owners): each owner's best cosine with each query; -1 for an owner without vectors."""
        best = np.full((len(queries), owners), -1.0, dtype=np.float32)
        if len(self.owner) == 0:
            return best
        similarity = queries @ np.asarray(self.vectors).T  # (n, vectors)
        best[:, self._owners] = np.maximum.reduceat(similarity, self._run_starts, axis=1)
        return best
