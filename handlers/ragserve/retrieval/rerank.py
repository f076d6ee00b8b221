"""Optional second stage: a cross-encoder reads each (question, chunk) pair of the best candidates.

Public names: Reranker.
A bi-encoder (the embedder) compares two vectors made apart; a cross-encoder reads the question and
the passage together, so it tells "batch size 1" from "several prompts at once" where vectors
cannot: the passage-inside-the-right-page misses of `make eval`'s indirect set are its job.
Off by default, because no cross-encoder's weights can be installed offline here: no PyPI package
ships them (FlashRank, rerankers and the like download them from the Hugging Face hub at run time).
Online, set `rerank.model` to a hub id, e.g. `cross-encoder/ms-marco-MiniLM-L-6-v2` (22M parameters)
or `BAAI/bge-reranker-base`; sentence-transformers' CrossEncoder loads either, or a local folder.
"""

from __future__ import annotations

import dataclasses

from ragserve.config import RerankConfig
from ragserve.retrieval.retriever import Hit


class Reranker:
    """Reorders each question's hits by the cross-encoder's score (ties keep the retrieval order)."""

    def __init__(self, cfg: RerankConfig, device: str = "cpu") -> None:
        from sentence_transformers import CrossEncoder  # loaded only when a reranker is configured

        self.cfg = cfg
        self.model = CrossEncoder(cfg.model, max_length=cfg.max_length, device=device)

    def rerank(self, questions: list[str], hits: list[list[Hit]], k: int) -> list[list[Hit]]:
        """The top k of each question's hits by cross-encoder score, with Hit.rerank set."""
        pairs = [
            (question, hit.document.page_content) for question, row in zip(questions, hits, strict=True) for hit in row
        ]
        scores = self.model.predict(pairs, batch_size=self.cfg.batch_size, show_progress_bar=False) if pairs else []
        reranked, start = [], 0
        for row in hits:
            row_scores = [float(s) for s in scores[start : start + len(row)]]
            start += len(row)
            order = sorted(range(len(row)), key=lambda i: -row_scores[i])  # stable: ties keep retrieval order
            reranked.append([dataclasses.replace(row[i], rerank=row_scores[i]) for i in order[:k]])
        return reranked
