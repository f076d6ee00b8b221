"""Lexical retrieval: a BM25 index (bm25s) over the same chunks as the FAISS index, and rank fusion.

Public names: Lexical, reciprocal_rank_fusion.
Names and numbers ("128,256", "405B", "GQA") decide many factual questions, and dense embeddings
blur them; BM25 catches them. The BM25 index is built with the FAISS index and saved beside it as
numpy arrays and JSON (bm25s writes no pickle), so workers load it instead of rebuilding it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import bm25s
import Stemmer

STEMMER_LANGUAGE = "english"


class Lexical:
    """BM25 over chunk texts, addressed by the chunks' positions in the FAISS index."""

    def __init__(self, retriever: bm25s.BM25) -> None:
        self.retriever = retriever
        self.stemmer = Stemmer.Stemmer(STEMMER_LANGUAGE)

    @classmethod
    def build(cls, texts: Sequence[str]) -> Lexical:
        lexical = cls(bm25s.BM25())
        lexical.retriever.index(lexical._tokenize(list(texts)), show_progress=False)
        return lexical

    def save(self, folder: Path) -> list[Path]:
        """Write the index files; returns them (the manifest checksums each)."""
        self.retriever.save(str(folder))
        return sorted(p for p in folder.iterdir() if p.is_file())

    @classmethod
    def load(cls, folder: Path) -> Lexical:
        return cls(bm25s.BM25.load(str(folder), load_corpus=False, allow_pickle=False))

    def search(self, questions: list[str], k: int) -> list[list[int]]:
        """Chunk positions per question, best first; chunks sharing no term with it are left out."""
        total = int(self.retriever.scores["num_docs"])
        # Query terms as strings: bm25s maps them through the index's own vocabulary.
        tokens = bm25s.tokenize(questions, stopwords="en", stemmer=self.stemmer, return_ids=False, show_progress=False)
        ids, scores = self.retriever.retrieve(tokens, k=min(k, total), show_progress=False, n_threads=1)
        return [
            [int(i) for i, s in zip(row_ids, row_scores, strict=True) if s > 0]
            for row_ids, row_scores in zip(ids, scores, strict=True)
        ]

    def _tokenize(self, texts: list[str]) -> bm25s.tokenization.Tokenized:
        return bm25s.tokenize(texts, stopwords="en", stemmer=self.stemmer, show_progress=False)


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int, rrf_k: int = 60) -> list[int]:
    """Merge ranked id lists by sum of 1 / (rrf_k + rank) (Cormack et al. 2009); returns the top k ids."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (rrf_k + rank)
    # Ties keep the first ranking's order (dense first): sorted() is stable over insertion order.
    return [item for item, _ in sorted(scores.items(), key=lambda pair: -pair[1])][:k]
