"""The RAG endpoint's work, independent of TorchServe: a batch of queries -> prompts and sources.

Public names: RAGPipeline, Answers, Retrieved, StageTimes.
`answer(queries)` embeds all questions in one forward pass, runs one index search for the whole
batch (at the largest k asked; dense, or dense + BM25 fused when retrieval.hybrid), reranks the
candidates when a cross-encoder is configured (rerank.py), and returns one plain result per query
(Retrieved: its top-k hits, its Llama prompt, its vectors, the version that answered, with
"query_adapter": the identity of the adapter that mapped the question vectors when
retrieval.query_adapter names one). api/openai_rag.rag_reply turns a result into the wire body.
from_config loads the line's live version and, with index.follow_s > 0, follows it (follow.py): a version
published later is swapped in between batches.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ragserve.config import Config
from ragserve.embedding.adapter import QueryAdapter
from ragserve.embedding.encoder import Encoder
from ragserve.index.follow import Follower, Live
from ragserve.index.line import IndexLine
from ragserve.index.store import IndexVersion, load_current, set_search_threads
from ragserve.retrieval.filters import Filter
from ragserve.retrieval.prompt import build_prompt
from ragserve.retrieval.queries import EmbeddingsQuery, Query, RAGQuery
from ragserve.retrieval.rerank import Reranker
from ragserve.retrieval.retriever import Hit, Retriever

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StageTimes:
    """Milliseconds spent per stage of one batch (exported as TorchServe metrics)."""

    embed_ms: float = 0.0
    search_ms: float = 0.0
    rerank_ms: float | None = None  # None: no reranker

    def metrics(self) -> dict[str, float]:
        """The stages as TorchServe metric names (the rerank stage only when there is one)."""
        stages = {"RAGEmbedTime": self.embed_ms, "RAGSearchTime": self.search_ms, "RAGRerankTime": self.rerank_ms}
        return {name: ms for name, ms in stages.items() if ms is not None}


@dataclass(frozen=True)
class Retrieved:
    """What one query got: plain values, the wire body is api's (openai_rag.rag_reply)."""

    hits: list[Hit]  # its top-k chunks, best first (none for an embeddings query)
    prompt: str | None  # the Llama prompt (a Query's), None otherwise
    vectors: np.ndarray  # (texts, dim): the query's own rows (an embeddings query's inputs)
    tokens: int  # the embedding inputs' tokens (usage), 0 for a question
    index: dict[str, Any]  # the version that answered: {"version", "created"[, "query_adapter"]}


@dataclass(frozen=True)
class Answers:
    """One batch's results (one per query, in order) and what each stage took."""

    results: list[Retrieved]
    times: StageTimes


class RAGPipeline:
    """Encoder + index + prompt template, built once per worker."""

    def __init__(self, cfg: Config, encoder: Encoder, index: IndexVersion, device: str = "cpu") -> None:
        self.cfg = cfg
        self.encoder = encoder
        set_search_threads(cfg.runtime.search_threads)
        adapter = cfg.retrieval.query_adapter
        self.adapter = QueryAdapter.load(adapter) if adapter else None  # per pipeline: eval variants share encoders
        if self.adapter is not None:
            logger.info("query adapter %s (%s)", self.adapter.identity, adapter)
        # The version loaded at start-up: handed to the follower by follow(), which then holds the only reference.
        self._start: Live[Retriever] | None = Live(index.version, self._retriever(index))
        self.follower: Follower[Retriever] | None = None
        self.reranker = Reranker(cfg.rerank, device) if cfg.rerank.model else None

    @classmethod
    def from_config(cls, cfg: Config, device: str = "cpu", export_missing: bool = True) -> RAGPipeline:
        """Load the encoder (compiling and warming it up) and the live index version; follow the line. A worker
        passes export_missing=False: a missing ONNX export fails its start, naming the command that makes it."""
        encoder = Encoder(cfg.embedding, cfg.compile, device, export_missing)
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

        def load(version: str) -> Retriever:
            return self._retriever(IndexVersion.load(line.folder(version), self.cfg, self.encoder))

        self.follower = Follower(line, self.live, load, every_s)
        self._start = None  # freed with the follower's first swap (and the last batch holding it)
        return self.follower

    @property
    def live(self) -> Live[Retriever]:
        """(version, retriever) answering now: the follower's once following, else the start-up one."""
        if self.follower is not None:
            return self.follower.live
        assert self._start is not None
        return self._start

    @property
    def retriever(self) -> Retriever:
        """The live version's retriever (read once per batch)."""
        return self.live.value

    @property
    def index(self) -> IndexVersion:
        return self.retriever.index

    def _retriever(self, index: IndexVersion) -> Retriever:
        return Retriever(index, self.cfg.retrieval, self.adapter)

    def answer(self, queries: Sequence[RAGQuery]) -> Answers:
        """One embedding forward for every text of the batch (questions and embedding inputs alike) and one
        index search for its questions; one result per query."""
        if not queries:
            return Answers([], StageTimes())
        retriever = self.retriever  # one version for the whole batch, even if a swap lands meanwhile
        texts = [text for query in queries for text in _texts(query)]
        start = time.perf_counter()
        vectors = self.encoder.embed(texts)  # (texts, dim)
        embed_ms = (time.perf_counter() - start) * 1e3
        rows = np.cumsum([0] + [len(_texts(query)) for query in queries])  # each query's first row
        asking = [i for i, query in enumerate(queries) if not isinstance(query, EmbeddingsQuery)]
        hits: dict[int, list[Hit]] = {}
        times = StageTimes(embed_ms)
        if asking:
            found, searched = self._search(
                vectors[[rows[i] for i in asking]],
                [queries[i].question for i in asking],
                max(queries[i].k for i in asking),
                retriever,
                [queries[i].filter for i in asking],
            )
            hits = dict(zip(asking, found, strict=True))
            times = dataclasses.replace(searched, embed_ms=embed_ms)
        version = {"version": retriever.index.version, "created": retriever.index.manifest.get("created")}
        if retriever.adapter is not None:
            version["query_adapter"] = retriever.adapter.identity
        results = [
            self._result(query, hits.get(i, []), version, vectors[rows[i] : rows[i + 1]])
            for i, query in enumerate(queries)
        ]
        return Answers(results, times)

    def retrieve(
        self,
        questions: list[str],
        k: int,
        retriever: Retriever | None = None,
        filters: list[Filter | None] | None = None,
    ) -> list[list[Hit]]:
        """The top-k chunks for each question, best first (from the live version unless retriever is given);
        filters[i]: the chunks question i may retrieve."""
        vectors = self.encoder.embed(questions)  # (n, dim)
        return self._search(vectors, questions, k, retriever or self.retriever, filters)[0]

    def _search(
        self,
        vectors: np.ndarray,
        questions: list[str],
        k: int,
        retriever: Retriever,
        filters: list[Filter | None] | None,
    ) -> tuple[list[list[Hit]], StageTimes]:
        start = time.perf_counter()
        depth = max(k, self.cfg.rerank.candidates) if self.reranker else k
        hits = retriever.search(vectors, questions, depth, filters)
        searched = time.perf_counter()
        if self.reranker:
            hits = self.reranker.rerank(questions, hits, k)
        done = time.perf_counter()
        rerank_ms = (done - searched) * 1e3 if self.reranker else None
        return hits, StageTimes(0.0, (searched - start) * 1e3, rerank_ms)

    def _result(self, query: RAGQuery, hits: list[Hit], version: dict, vectors: np.ndarray) -> Retrieved:
        if isinstance(query, EmbeddingsQuery):
            return Retrieved([], None, vectors, query.tokens, version)
        hits = hits[: query.k]
        prompt = build_prompt(query.question, hits, self.cfg.retrieval.template) if isinstance(query, Query) else None
        return Retrieved(hits, prompt, vectors, 0, version)


def _texts(query: RAGQuery) -> tuple[str, ...]:
    """The texts a query needs embedded: its question, or its embedding inputs."""
    return query.texts if isinstance(query, EmbeddingsQuery) else (query.question,)
