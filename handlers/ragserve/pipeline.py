"""The RAG endpoint's work, independent of TorchServe: a batch of queries -> prompts and sources.

Public names: RAGPipeline.
`answer(queries)` embeds all questions in one forward pass, runs one index search for the whole
batch (at the largest k asked; dense, or dense + BM25 fused when retrieval.hybrid), reranks the
candidates when a cross-encoder is configured (rerank.py), and returns one response per query:
the prompt text, or {"prompt", "sources"} for JSON queries.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from .config import Config
from .embeddings import Encoder
from .index import Index, set_search_threads
from .prompt import build_prompt, format_sources
from .rerank import Reranker
from .retrieval import Hit, PageIndex, Retriever
from .serving import Query

logger = logging.getLogger(__name__)


@dataclass
class StageTimes:
    """Milliseconds spent per stage in the last batch (exported as TorchServe metrics)."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    rerank_ms: float = 0.0


class RAGPipeline:
    """Encoder + index + prompt template, built once per worker."""

    def __init__(self, cfg: Config, encoder: Encoder, index: Index, device: str = "cpu") -> None:
        self.cfg = cfg
        self.encoder = encoder
        self.index = index
        set_search_threads(cfg.index.search_threads)
        pages = None
        if cfg.retrieval.hybrid and cfg.retrieval.page_weight > 0:
            pages = PageIndex.from_index(index)
        self.retriever = Retriever(index, cfg.retrieval, pages)
        self.reranker = Reranker(cfg.rerank, device) if cfg.rerank.model else None
        self.last_times = StageTimes()

    @classmethod
    def from_config(cls, cfg: Config, device: str = "cpu") -> RAGPipeline:
        """Load the encoder (compiling and warming it up) and load or build the index."""
        encoder = Encoder(cfg.embedding, cfg.compile, device)
        start = time.perf_counter()
        index = Index.load_or_build(cfg, encoder)
        pipeline = cls(cfg, encoder, index, device)
        logger.info("index ready: %d chunks in %.1f s", len(index), time.perf_counter() - start)
        return pipeline

    def answer(self, queries: list[Query]) -> list[str | dict[str, Any]]:
        """One embedding forward and one index search for the whole batch."""
        if not queries:
            return []
        hits_per_query = self.retrieve([query.question for query in queries], max(query.k for query in queries))
        return [self._respond(query, hits[: query.k]) for query, hits in zip(queries, hits_per_query, strict=True)]

    def retrieve(self, questions: list[str], k: int) -> list[list[Hit]]:
        """The top-k chunks for each question, best first."""
        start = time.perf_counter()
        vectors = self.encoder.embed(questions)  # (n, dim)
        embedded = time.perf_counter()
        depth = max(k, self.cfg.rerank.candidates) if self.reranker else k
        hits = self.retriever.search(vectors, questions, depth)
        searched = time.perf_counter()
        if self.reranker:
            hits = self.reranker.rerank(questions, hits, k)
        done = time.perf_counter()
        self.last_times = StageTimes((embedded - start) * 1e3, (searched - embedded) * 1e3, (done - searched) * 1e3)
        return hits

    def _respond(self, query: Query, hits: list[Hit]) -> str | dict[str, Any]:
        prompt = build_prompt(query.question, hits, self.cfg.retrieval.template)
        if not query.as_json:
            return prompt
        return {"prompt": prompt, "sources": format_sources(hits)}
