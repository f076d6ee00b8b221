from __future__ import annotations

from ragserve.retrieval.fusion import convex_combination, reciprocal_rank_fusion


def ids(fused: list[tuple[int, float]]) -> list[int]:
    scores = [score for _, score in fused]
    assert scores == sorted(scores, reverse=True)  # best first
    return [item for item, _ in fused]


def test_rrf_rewards_items_both_rankings_agree_on() -> None:
    assert ids(reciprocal_rank_fusion([[1, 2, 3], [4, 2, 5]], k=2)) == [2, 1]


def test_rrf_ties_keep_the_first_rankings_order() -> None:
    assert ids(reciprocal_rank_fusion([[7, 8], [8, 7]], k=2)) == [7, 8]


def test_convex_lets_a_clear_lexical_winner_beat_a_middling_dense_one() -> None:
    dense = {1: 0.52, 3: 0.51, 2: 0.50}  # nearly equal on dense: 1 barely ahead, 2 last
    lexical = {2: 30.0, 3: 1.0, 1: 0.0}  # 2 far ahead on BM25 (an exact number matched)
    assert ids(convex_combination(dense, lexical, dense_weight=0.3, k=3))[0] == 2
    # RRF sees only ranks: first + last ties with last + first, and the dense order wins.
    assert ids(reciprocal_rank_fusion([[1, 3, 2], [2, 3, 1]], k=1)) == [1]


def test_convex_weights_zero_and_one_give_each_ranking_alone() -> None:
    dense = {1: 0.9, 2: 0.5, 3: 0.1}
    lexical = {1: 1.0, 2: 3.0, 3: 2.0}
    assert ids(convex_combination(dense, lexical, dense_weight=1.0, k=3)) == [1, 2, 3]
    assert ids(convex_combination(dense, lexical, dense_weight=0.0, k=3)) == [2, 3, 1]


def test_convex_survives_equal_scores_and_empty_input() -> None:
    assert ids(convex_combination({1: 0.5, 2: 0.5}, {1: 0.0, 2: 0.0}, 0.3, k=2)) == [1, 2]
    assert ids(convex_combination({}, {}, 0.3, k=5)) == []
