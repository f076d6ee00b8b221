"""The RAG endpoint's work, independent of TorchServe: a batch of queries -> prompts and sources.

Public names: RAGPipeline.
`answer(queries)` embeds all questions in one forward pass, runs one index search for the whole
batch (at the largest k asked; dense, or dense + BM25 fused when retrieval.hybrid), reranks the
candidates when a cross-encoder is configured (rerank.py), and returns one response per query:
the prompt text, or {"prompt", "sources", "index"} for JSON queries ("index": the version that
answered). from_config loads the line's live version and, with index.follow_s > 0, follows it
(follow.py): a version published later is swapped in between batches.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Any

from .config import Config
from .embeddings import Encoder
from .filters import Filter
from .follow import Follower, Live
from .prompt import build_prompt, format_sources
from .rerank import Reranker
from .retrieval import Hit, PageIndex, Retriever
from .serving import Query
from .store import Index, IndexLine, load_current, set_search_threads

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
        set_search_threads(cfg.index.search_threads)
        self.live = Live(index.version, self._retriever(index))
        self.follower: Follower[Retriever] | None = None
        self.reranker = Reranker(cfg.rerank, device) if cfg.rerank.model else None
        self.last_times = StageTimes()

    @classmethod
    def from_config(cls, cfg: Config, device: str = "cpu") -> RAGPipeline:
        """Load the encoder (compiling and warming it up) and the live index version; follow the line."""
        encoder = Encoder(cfg.embedding, cfg.compile, device)
        start = time.perf_counter()
        index = load_current(cfg, encoder)
        pipeline = cls(cfg, encoder, index, device)
        logger.info(
            "index version %s ready: %d chunks in %.1f s", index.version, len(index), time.perf_counter() - start
        )
        if cfg.index.follow_s > 0:
            pipeline.follow(IndexLine.of(cfg), cfg.index.follow_s)
        return pipeline

    def follow(self, line: IndexLine, every_s: float) -> Follower[Retriever]:
        """Swap to each version published on line from now on (checked every every_s seconds)."""
        load = lambda version: self._retriever(Index.load(line.folder(version), self.cfg, self.encoder))  # noqa: E731
        self.follower = Follower(line, self.live, load, every_s)
        return self.follower

    @property
    def retriever(self) -> Retriever:
        """The live version's retriever (read once per batch)."""
        return self.follower.live.value if self.follower else self.live.value

    @property
    def index(self) -> Index:
        return self.retriever.index

    def _retriever(self, index: Index) -> Retriever:
        pages = (
            PageIndex.from_index(index) if self.cfg.retrieval.hybrid and self.cfg.retrieval.page_weight > 0 else None
        )
        return Retriever(index, self.cfg.retrieval, pages)

    def answer(self, queries: list[Query]) -> list[str | dict[str, Any]]:
        """One embedding forward and one index search for the whole batch."""
        if not queries:
            return []
        retriever = self.retriever  # one version for the whole batch, even if a swap lands meanwhile
        questions, k = [query.question for query in queries], max(query.k for query in queries)
        hits_per_query = self.retrieve(questions, k, retriever, [query.filter for query in queries])
        version = {"version": retriever.index.version, "created": retriever.index.manifest.get("created")}
        return [
            self._respond(query, hits[: query.k], version) for query, hits in zip(queries, hits_per_query, strict=True)
        ]

    def retrieve(
        self,
        questions: list[str],
        k: int,
        retriever: Retriever | None = None,
        filters: list[Filter | None] | None = None,
    ) -> list[list[Hit]]:
        """The top-k chunks for each question, best first (from the live version unless retriever is given);
        filters[i]: the chunks question i may retrieve."""
        retriever = retriever or self.retriever
        start = time.perf_counter()
        vectors = self.encoder.embed(questions)  # (n, dim)
        embedded = time.perf_counter()
        depth = max(k, self.cfg.rerank.candidates) if self.reranker else k
        hits = retriever.search(vectors, questions, depth, filters)
        searched = time.perf_counter()
        if self.reranker:
            hits = self.reranker.rerank(questions, hits, k)
        done = time.perf_counter()
        self.last_times = StageTimes((embedded - start) * 1e3, (searched - embedded) * 1e3, (done - searched) * 1e3)
        return hits

    def _respond(self, query: Query, hits: list[Hit], version: dict[str, Any]) -> str | dict[str, Any]:
        prompt = build_prompt(query.question, hits, self.cfg.retrieval.template)
        if not query.as_json:
            return prompt
        return {"prompt": prompt, "sources": format_sources(hits), "index": version}
