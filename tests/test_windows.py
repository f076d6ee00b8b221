"""Sentence windows: how chunks are cut into windows, each owner's best vector, and what windows change."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from langchain_core.documents import Document

from ragserve.config import ConfigError, IndexConfig, RetrievalConfig
from ragserve.index.builder import build_in_memory
from ragserve.index.vectorsets import VectorSet
from ragserve.index.windows import WindowVectors, sentence_windows
from ragserve.retrieval.retriever import Retriever


def test_windows_step_by_the_stride_and_the_last_one_reaches_the_end() -> None:
    text = "One. Two! Three?\n# Four\nFive. Six."
    assert sentence_windows(text, 3, 2) == ["One. Two! Three?", "Three? # Four Five.", "# Four Five. Six."]
    assert sentence_windows(text, 3, 3) == ["One. Two! Three?", "# Four Five. Six."]
    assert sentence_windows("Version 3.1 is out. It is 8B.", 3, 2) == ["Version 3.1 is out. It is 8B."]  # one window
    assert sentence_windows(" \n ", 3, 2) == []


def test_each_owner_scores_its_best_vector_and_an_owner_without_vectors_gets_minus_one() -> None:
    vectors = np.array([[1, 0], [0, 1], [0.6, 0.8]], dtype=np.float32)
    owned = VectorSet(vectors, np.array([0, 0, 2]))  # owner 1 has no vector
    best = owned.best(np.array([[1, 0], [0, 1]], dtype=np.float32), owners=3)
    assert np.allclose(best, [[1.0, -1.0, 0.6], [1.0, -1.0, 0.8]])


def test_best_of_reads_only_the_listed_owners_and_equals_best() -> None:
    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(9, 4)).astype(np.float32)
    owners = VectorSet(vectors, np.array([0, 0, 1, 3, 3, 3, 4, 6, 6]))  # owners 2 and 5 have no vector
    query = rng.normal(size=4).astype(np.float32)
    full = owners.best(query[None, :], 8)[0]
    asked = [6, 2, 0, 3, 7, 5]
    assert owners.best_of(query, asked) == pytest.approx(full[asked])
    assert owners.best_of(query, [2, 5, 7]).tolist() == [-1.0, -1.0, -1.0]
    assert owners.best_of(query, []).shape == (0,)


@pytest.mark.model
def test_pool_window_search_rescores_the_candidates_as_the_full_scan_does(encoder) -> None:
    index, _ = build_in_memory(CHUNKS, encoder)
    question = "How is the Falcon cluster cooled?"
    vector = encoder.embed([question])
    full = Retriever(index, RetrievalConfig(page_weight=0.0)).search(vector, [question], 2)[0]
    pool = Retriever(index, RetrievalConfig(page_weight=0.0, window_search="pool")).search(vector, [question], 2)[0]
    assert [(h.document, h.fused) for h in pool] == [(h.document, pytest.approx(h.fused)) for h in full]


def test_window_vectors_round_trip_memory_mapped(tmp_path) -> None:
    windows = WindowVectors(np.eye(3, dtype=np.float32), np.array([0, 1, 1]))
    windows.save(tmp_path / "w")
    loaded = WindowVectors.load(tmp_path / "w", mmap=True)
    assert isinstance(loaded.vectors, np.memmap) and np.array_equal(loaded.vectors, windows.vectors)
    assert np.array_equal(loaded.owner, windows.owner)


def test_window_settings_are_checked() -> None:
    with pytest.raises(ConfigError, match="window_stride"):
        IndexConfig(window_sentences=2, window_stride=3)
    with pytest.raises(ConfigError, match="window_weight"):
        RetrievalConfig(window_weight=1.5)


DETAIL = "The Falcon cluster is cooled with water pumped from the river Rhine."
CHUNKS = [
    Document(
        "The Falcon cluster opened in 2021 with 4,000 GPUs. Its scheduler is Slurm, and jobs are queued by "
        f"project. Researchers book time a month ahead. {DETAIL} Storage is a 20 PB Lustre file system. "
        "Training runs are checkpointed every hour. The cluster hosts yearly open days for students.",
        metadata={"source": "falcon", "title": "Falcon"},
    ),
    Document(
        "Cooling a data centre: air cooling, liquid cooling and immersion cooling compared, with their "
        "costs and how much water each one uses.",
        metadata={"source": "cooling", "title": "Cooling"},
    ),
]


@pytest.mark.model
def test_a_detail_inside_a_long_chunk_scores_higher_through_its_window(encoder) -> None:
    index, _ = build_in_memory(CHUNKS, encoder)  # the default config: windows of 3 sentences, every 2
    question = "How is the Falcon cluster cooled?"
    vector = encoder.embed([question])
    best = index.windows.best(vector, len(index))[0]
    assert best[0] > index.dense_score(vector[0], 0) + 0.05  # the window says it more plainly than the chunk
    dense_only = RetrievalConfig(dense_weight=1.0, page_weight=0.0)
    with_windows = Retriever(index, dataclasses.replace(dense_only, window_weight=1.0))
    hits = with_windows.search(vector, [question], 2)[0]
    assert hits[0].document.metadata["source"] == "falcon"
    assert hits[0].score == pytest.approx(index.dense_score(vector[0], 0))  # Hit.score stays the chunk cosine
    assert Retriever(index, dataclasses.replace(dense_only, window_weight=0.0)).windows is None
