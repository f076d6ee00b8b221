"""Merging the dense (FAISS) and lexical (BM25) rankings of one question into one.

Public names: reciprocal_rank_fusion, convex_combination, min_max.
LangChain's EnsembleRetriever does weighted RRF one query at a time over Retriever objects and
returns no scores; these work on the ids and scores the batched index search already has.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int, rrf_k: int = 60) -> list[tuple[int, float]]:
    """Merge ranked id lists by sum of 1 / (rrf_k + rank) (Cormack et al. 2009); the top k (id, score)."""
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (rrf_k + rank)
    # Ties keep the first ranking's order (dense first): sorted() is stable over insertion order.
    return sorted(scores.items(), key=lambda pair: -pair[1])[:k]


def convex_combination(
    dense: Mapping[int, float], lexical: Mapping[int, float], dense_weight: float, k: int
) -> list[tuple[int, float]]:
    """Top k (id, score) by w * dense + (1 - w) * lexical, each min-max normalised over the candidates.

    Both maps must score the same candidate ids (higher is better). Unlike RRF this keeps how far
    apart the scores are, so a strong BM25 match is not outvoted by a middling dense one
    (Bruch et al., "An Analysis of Fusion Functions for Hybrid Retrieval", 2023).
    """
    dense_n, lexical_n = min_max(dense), min_max(lexical)
    fused = {i: dense_weight * dense_n[i] + (1.0 - dense_weight) * lexical_n[i] for i in dense}
    return sorted(fused.items(), key=lambda pair: -pair[1])[:k]


def min_max(scores: Mapping[int, float]) -> dict[int, float]:
    """Scores rescaled to [0, 1] (all 0 when they are all equal)."""
    low, high = min(scores.values(), default=0.0), max(scores.values(), default=0.0)
    span = high - low
    return {i: (s - low) / span if span > 0 else 0.0 for i, s in scores.items()}
