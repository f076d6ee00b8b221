"""Retrieval over an index version (IndexVersion): dense and BM25 candidates, their fusion, and page scores.

Public names: Retriever, Hit, unit_rows.
store.py holds chunks, vectors and BM25; this module decides what a question retrieves:
1. candidates: the top `candidates` chunks by FAISS, by their best sentence window and by BM25,
   plus every chunk of the `page_candidates` best pages (default 0: long pages' chunks crowded the pool);
2. chunk score: the convex (or RRF) fusion of the dense and BM25 scores over that pool; with
   sentence windows (windows.py) the dense score is (1 - window_weight) * the chunk's cosine +
   window_weight * its best window's cosine (window_search "pool": only the candidates' windows are read, so
   they rescore the pool without adding to it: a search reads hundreds of window vectors, not every one);
3. page score (retrieval.page_weight > 0): each page's record (title, date, authors, tags, headings,
   first paragraph; index/pages.py, saved with the version) scored by its BM25 and by its best vector (title,
   each heading, the lead, each its own vector), fused the same way; a chunk's final score is
   (1 - page_weight) * chunk score + page_weight * its page's score.
Questions that describe a page rather than name it ("Meta's April 2024 open models") find it by
its identity, and the chunk-level scores still pick the passage inside it.
With a query adapter (retrieval.query_adapter, embedding/adapter.py), search() maps the question
vectors first, so every dense score above (chunks, pages, windows) sees the adapted ones.
No faiss or torch import here: the index, the encoder and the adapter are passed in.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from langchain_core.documents import Document

from ragserve.config import RetrievalConfig
from ragserve.retrieval.filters import ChunkTable, Filter
from ragserve.retrieval.fusion import convex_combination, min_max, reciprocal_rank_fusion

if TYPE_CHECKING:
    from ragserve.embedding.adapter import QueryAdapter
    from ragserve.index.store import IndexVersion


@dataclass(frozen=True)
class Hit:
    document: Document
    score: float  # dense: cosine similarity (or squared L2 distance with metric l2)
    fused: float | None = None  # hybrid: the score the hits are ordered by
    rerank: float | None = None  # with a reranker (rerank.py): its score, which then orders the hits


class Retriever:
    """Ranks an index version's chunks for a batch of questions, as retrieval config says."""

    def __init__(self, index: IndexVersion, cfg: RetrievalConfig, adapter: QueryAdapter | None = None) -> None:
        self.index = index
        self.cfg = cfg
        self.adapter = adapter  # applied to question vectors in search(); checked against the index's width here
        if adapter is not None:
            adapter.check(index.store.index.d, f"index version {index.version}")
        uses_pages = cfg.hybrid and cfg.page_weight > 0
        if uses_pages and index.pages is None:
            raise ValueError("retrieval.page_weight needs the index's pages: build it with builder.build_in_memory")
        self.pages = index.pages if uses_pages else None
        self.chunk_page = self.pages.page_of_chunks(len(index)) if self.pages else None
        self.windows = index.windows if cfg.hybrid and cfg.window_weight > 0 else None

    def search(
        self, vectors: np.ndarray, questions: list[str], k: int, filters: Sequence[Filter | None] | None = None
    ) -> list[list[Hit]]:
        """The top-k hits for each question, best first; filters[i]: which chunks question i may retrieve.

        vectors: (n, dim) the questions as the encoder embeds them (the query adapter, if any, applies here)."""
        if self.adapter is not None:
            vectors = self.adapter.apply(vectors)
        masks = [self.table.mask(f) if f else None for f in filters] if filters else [None] * len(vectors)
        if not self.cfg.hybrid:
            return self.dense(vectors, k, masks)
        return self.hybrid(vectors, questions, k, masks)

    @functools.cached_property
    def table(self) -> ChunkTable:
        """The chunks' filterable metadata (built on the first filtered question)."""
        return ChunkTable(self.index.documents())

    def dense(self, vectors: np.ndarray, k: int, masks: Sequence[np.ndarray | None] = ()) -> list[list[Hit]]:
        """FAISS alone (the original demo's retrieval)."""
        scores, ids = self._dense_search(vectors, k, masks)
        return [
            [Hit(self.index.document(int(i)), float(s)) for s, i in zip(row_s, row_i, strict=True) if i >= 0]
            for row_s, row_i in zip(scores, ids, strict=True)
        ]

    def _dense_search(
        self, vectors: np.ndarray, k: int, masks: Sequence[np.ndarray | None]
    ) -> tuple[np.ndarray, np.ndarray]:
        """One FAISS search for the unfiltered rows together; each filtered row among its allowed chunks only."""
        masks = list(masks) or [None] * len(vectors)
        scores = np.full((len(vectors), k), -np.inf, dtype=np.float32)
        ids = np.full((len(vectors), k), -1, dtype=np.int64)
        plain = [row for row, mask in enumerate(masks) if mask is None]
        if plain:
            scores[plain], ids[plain] = self.index.dense_search(vectors[plain], k)
        for row, mask in enumerate(masks):
            if mask is not None:
                scores[row : row + 1], ids[row : row + 1] = self.index.dense_search(
                    vectors[row : row + 1], k, np.flatnonzero(mask)
                )
        return scores, ids

    def hybrid(
        self, vectors: np.ndarray, questions: list[str], k: int, masks: Sequence[np.ndarray | None] = ()
    ) -> list[list[Hit]]:
        """Dense and BM25 candidates fused; with page_weight, each chunk's page score mixed in."""
        cfg = self.cfg
        masks = list(masks) or [None] * len(vectors)
        dense_hits, dense_ids = self._dense_search(vectors, cfg.candidates, masks)  # (n, candidates)
        lexical_scores = self.index.bm25.scores(questions)  # (n, chunks)
        page_scores = self.page_scores(vectors, questions) if self.pages else None
        every_window = self.windows is not None and cfg.window_search == "all"
        window_scores = self.windows.best(vectors, len(self.index)) if every_window else None
        results = []
        for row, (vector, lexical) in enumerate(zip(vectors, lexical_scores, strict=True)):
            mask = masks[row]
            if mask is not None:  # a chunk outside the filter is no candidate of any ranking
                lexical = np.where(mask, lexical, 0.0)
                if window_scores is not None:
                    window_scores[row] = np.where(mask, window_scores[row], -1.0)
            dense = {int(i): float(s) for s, i in zip(dense_hits[row], dense_ids[row], strict=True) if i >= 0}
            dense_top = list(dense)
            window_top = _top(window_scores[row], cfg.candidates) if window_scores is not None else []
            window_top = [i for i in window_top if mask is None or mask[i]]
            lexical_top = [i for i in _top(lexical, cfg.candidates) if lexical[i] > 0]
            page_top = self._chunks_of_best_pages(page_scores[row]) if page_scores is not None else []
            page_top = [i for i in page_top if mask is None or mask[i]]
            pool = list(dict.fromkeys(dense_top + window_top + lexical_top + page_top))
            if not pool:
                results.append([])
                continue
            missing = [
                i for i in pool if i not in dense
            ]  # candidates FAISS did not return: score them as it would have
            dense.update(zip(missing, self.index.dense_scores(vector, missing).tolist(), strict=True))
            if self.windows is not None and window_scores is None:  # window_search "pool": the candidates' only
                best_window = dict(zip(pool, self.windows.best_of(vector, pool).tolist(), strict=True))
                signal = self._with_windows(dense, best_window)
            else:
                signal = dense if window_scores is None else self._with_windows(dense, window_scores[row])
            dense_ranking = sorted(dict.fromkeys(dense_top + window_top), key=lambda i: -signal[i])[: cfg.candidates]
            fused = self._fuse(signal, dense_ranking, lexical_top, {i: float(lexical[i]) for i in pool}, len(pool))
            if page_scores is not None:
                fused = self._with_pages(fused, page_scores[row])
            results.append([Hit(self.index.document(i), dense[i], score) for i, score in fused[:k]])
        return results

    def page_scores(self, vectors: np.ndarray, questions: list[str]) -> np.ndarray:
        """(n questions, n pages) in [0, 1]: convex fusion (retrieval.page_dense_weight) of each page's best-vector
        cosine and its record's BM25, over the version's pages (whether or not page_weight mixes them in)."""
        pages = self.index.pages
        if pages is None:
            raise ValueError("page scores need the index's pages: build it with builder.build_in_memory")
        dense = pages.vectors.best(vectors, len(pages.records))
        lexical = pages.bm25.scores(questions)
        weight = self.cfg.page_dense_weight
        return weight * unit_rows(dense) + (1 - weight) * unit_rows(lexical)

    def _fuse(
        self, dense: dict[int, float], dense_top: list[int], lexical_top: list[int], lexical: dict[int, float], k: int
    ) -> list[tuple[int, float]]:
        if self.cfg.fusion == "rrf":
            return reciprocal_rank_fusion([dense_top, lexical_top], k, self.cfg.rrf_k)
        closeness = 1.0 if self.index.metric == "cosine" else -1.0  # higher is better for the fusion
        return convex_combination({i: closeness * s for i, s in dense.items()}, lexical, self.cfg.dense_weight, k)

    def _with_windows(self, cosine: dict[int, float], best_window: np.ndarray | dict[int, float]) -> dict[int, float]:
        """The dense signal: each chunk's cosine mixed with its best window's (a chunk without one keeps its own)."""
        weight = self.cfg.window_weight
        mixed = {}
        for i, score in cosine.items():
            window = float(best_window[i]) if best_window[i] > -1 else score
            mixed[i] = (1 - weight) * score + weight * window
        return mixed

    def _chunks_of_best_pages(self, page_scores: np.ndarray) -> list[int]:
        best = np.argsort(-page_scores, kind="stable")[: self.cfg.page_candidates]
        return [i for page in best for i in self.pages.records[page].chunks]

    def _with_pages(self, fused: list[tuple[int, float]], page_scores: np.ndarray) -> list[tuple[int, float]]:
        weight = self.cfg.page_weight
        chunk_scores = min_max(dict(fused))  # spans [0, 1] like the page scores (RRF's sums would not)
        mixed = {i: (1 - weight) * s + weight * float(page_scores[self.chunk_page[i]]) for i, s in chunk_scores.items()}
        return sorted(mixed.items(), key=lambda pair: -pair[1])


def _top(scores: np.ndarray, k: int) -> list[int]:
    """Positions of the k highest scores, best first (ties in position order)."""
    return [int(i) for i in np.argsort(-scores, kind="stable")[:k]]


def unit_rows(scores: np.ndarray) -> np.ndarray:
    """Each row min-max scaled to [0, 1] (all 0 where a row is constant), as fusion.min_max does."""
    low, high = scores.min(axis=1, keepdims=True), scores.max(axis=1, keepdims=True)
    span = np.where(high > low, high - low, 1.0)
    return np.where(high > low, (scores - low) / span, 0.0)
