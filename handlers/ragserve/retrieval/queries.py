"""What the RAG pipeline is asked, decoded from a request by api/ (the wire formats live there, not here).

Public names: Query, RetrievalQuery, EmbeddingsQuery, RAGQuery.
"""

from __future__ import annotations

from dataclasses import dataclass

from ragserve.retrieval.filters import Filter


@dataclass(frozen=True)
class Query:
    """The JSON/text contract: a question -> its Llama prompt (or {"prompt", "sources", "index"})."""

    question: str
    k: int
    as_json: bool  # reply with {"prompt", "sources"} instead of the bare prompt text
    filter: Filter | None = None  # which chunks it may retrieve (None: all)


@dataclass(frozen=True)
class RetrievalQuery:
    """v1/retrieval: a question -> its top-k chunks."""

    question: str
    k: int
    filter: Filter | None
    model: str


@dataclass(frozen=True)
class EmbeddingsQuery:
    """v1/embeddings: texts -> their vectors."""

    texts: tuple[str, ...]
    model: str
    as_base64: bool
    tokens: int  # the tokens the model reads of all inputs (usage), counted when the request was checked


RAGQuery = Query | RetrievalQuery | EmbeddingsQuery
