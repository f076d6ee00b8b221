"""Retrieval over an index version (retrieval/retriever.py): page records, page scores, hybrid and dense ranking."""

from __future__ import annotations

import dataclasses

import pytest
from langchain_core.documents import Document

from ragserve.config import Config, IndexConfig, RetrievalConfig
from ragserve.index.builder import build_in_memory
from ragserve.index.pages import PageVectors, page_records
from ragserve.retrieval.retriever import Retriever


def page(source: str, title: str, published: str, texts: list[str], authors: str = "") -> list[Document]:
    meta = {"source": source, "title": title, "published": published, "authors": authors}
    return [Document(text, metadata={**meta, "chunk": i}) for i, text in enumerate(texts)]


CHUNKS = [
    *page(
        "https://blog/falcon",
        "Falcon 2 arrives",
        "2024-05-13",
        ["# Falcon 2 arrives\nThe institute released an 11B model today.", "## Languages\nIt speaks many languages."],
        authors="tii",
    ),
    *page(
        "https://blog/otter",
        "Otter 7B",
        "2023-01-10",
        ["# Otter 7B\nOtter is a small model trained on web text.", "## Languages\nOtter supports English only."],
    ),
]


def test_page_records_gather_identity_from_the_chunks() -> None:
    falcon, otter = page_records(CHUNKS)
    assert (falcon.source, falcon.chunks, otter.chunks) == ("https://blog/falcon", (0, 1), (2, 3))
    assert falcon.headings == ("Languages",)  # the h1 repeats the title
    assert falcon.lead == "The institute released an 11B model today."
    words = falcon.lexical_text()
    assert "may 2024" in words and "spring 2024" in words and "tii" in words
    assert falcon.dense_texts() == ["Falcon 2 arrives", "Falcon 2 arrives: Languages", falcon.lead]


def test_page_vectors_round_trip_through_numpy_files(tmp_path) -> None:
    import numpy as np

    vectors = PageVectors(np.eye(3, dtype=np.float32), np.array([0, 0, 1]))
    files = vectors.save(tmp_path / "pages")
    loaded = PageVectors.load(tmp_path / "pages")
    assert [f.name for f in files] == ["owner.npy", "vectors.npy"]
    assert np.array_equal(loaded.vectors, vectors.vectors) and np.array_equal(loaded.owner, vectors.owner)


@pytest.mark.model
def test_a_question_that_describes_a_page_by_date_reaches_its_chunk(encoder) -> None:
    no_dates = Config(index=IndexConfig(bm25_metadata=False), retrieval=RetrievalConfig(window_weight=0.0))
    index, _ = build_in_memory(CHUNKS, encoder, no_dates)  # dates only in the page records
    question = "Which languages are supported by the spring 2024 model?"
    vectors = encoder.embed([question])
    chunks_only = Retriever(index, RetrievalConfig(page_weight=0.0))
    assert chunks_only.pages is None  # off: no page scores
    assert chunks_only.search(vectors, [question], 1)[0][0].document.metadata["title"] == "Otter 7B"  # "supports"
    hits = Retriever(index, RetrievalConfig(page_weight=0.5)).search(vectors, [question], 2)[0]
    assert hits[0].document.page_content.startswith("## Languages\nIt speaks")  # the spring 2024 page
    assert hits[0].fused >= hits[1].fused


@pytest.mark.model
def test_dense_only_retrieval_orders_by_cosine(encoder) -> None:
    index, _ = build_in_memory(CHUNKS, encoder)
    retriever = Retriever(index, dataclasses.replace(RetrievalConfig(), hybrid=False))
    hits = retriever.search(encoder.embed(["Which languages does Otter support?"]), [], 4)[0]
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True) and hits[0].fused is None
