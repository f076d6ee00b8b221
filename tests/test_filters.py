"""Metadata filters: decoding, the chunk mask, and retrieval that filters before its top k."""

from __future__ import annotations

import dataclasses

import pytest
from langchain_core.documents import Document

from ragserve.api.contracts import RequestError, decode_filter
from ragserve.config import RetrievalConfig
from ragserve.index.builder import build_in_memory
from ragserve.retrieval.filters import ChunkTable, Filter
from ragserve.retrieval.retriever import Retriever


def chunk(source: str, text: str, published: str = "", tags: str = "") -> Document:
    return Document(text, metadata={"source": source, "title": source.rsplit("/", 1)[-1], "published": published,
                                    "tags": tags})  # fmt: skip


CHUNKS = [
    chunk("https://blog/llama3", "Llama 3 has a vocabulary of 128,256 tokens.", "2024-04-18", "nlp, LLM"),
    chunk("https://blog/llama3", "Llama 3 uses grouped-query attention in both sizes.", "2024-04-18", "nlp, LLM"),
    chunk("https://blog/gemma", "Gemma has a vocabulary of 256K tokens.", "2024-02-21", "google"),
    chunk("https://docs/tokens", "The tokenizer vocabulary of the zebra server is tiny.", "", ""),
    chunk("https://docs/workers", "Workers read their vocabulary from the archive.", "", ""),
]


def test_decode_filter_reads_every_field_and_names_the_bad_one() -> None:
    where = decode_filter({"source_prefix": "https://blog/", "published_after": "2024-01-01", "tags": ["nlp"]})
    assert where == Filter(("https://blog/",), "2024-01-01", None, ("nlp",))
    for bad, field in [
        ({"published_before": "April 2024"}, "filter.published_before"),
        ({"source_prefix": ["ok", 3]}, "filter.source_prefix"),
        ({"tags": ""}, "filter.tags"),
        ({"author": "x"}, "filter.author"),
    ]:
        with pytest.raises(RequestError) as err:
            decode_filter(bad)
        assert err.value.field == field and err.value.status == 400
    with pytest.raises(RequestError, match="must be an object"):
        decode_filter(["https://blog/"])


def test_the_mask_combines_prefix_dates_and_tags() -> None:
    table = ChunkTable(CHUNKS)
    assert table.mask(Filter(source_prefix=("https://docs/",))).tolist() == [False, False, False, True, True]
    assert table.mask(Filter(published_after="2024-03-01")).tolist() == [True, True, False, False, False]
    assert table.mask(Filter(published_before="2024-04-18")).tolist() == [True, True, True, False, False]
    assert table.mask(Filter(tags=("GOOGLE", "other"))).tolist() == [False, False, True, False, False]
    assert table.mask(Filter(("https://blog/",), tags=("llm",))).tolist() == [True, True, False, False, False]
    assert table.mask(Filter()).all()


@pytest.mark.model
@pytest.mark.parametrize("hybrid", [True, False])
def test_retrieval_filters_before_its_top_k(encoder, hybrid: bool) -> None:
    index, _ = build_in_memory(CHUNKS, encoder)
    retriever = Retriever(index, dataclasses.replace(RetrievalConfig(), hybrid=hybrid))
    question = "How large is the Llama 3 vocabulary?"
    vectors = encoder.embed([question] * 3)
    docs_only, nothing = Filter(source_prefix=("https://docs/",)), Filter(source_prefix=("ftp://",))
    unfiltered, filtered, empty = retriever.search(vectors, [question] * 3, 2, [None, docs_only, nothing])
    assert unfiltered[0].document.metadata["source"] == "https://blog/llama3"
    # the two docs chunks rank below the blog ones unfiltered, and still both come back: k matched
    assert {h.document.metadata["source"] for h in filtered} == {"https://docs/tokens", "https://docs/workers"}
    assert len(filtered) == 2 and empty == []
