"""Why retrieval missed: for each answerable question missed at 10, where its evidence is and where its page ranks.

Public names: folded, same_page, cause, Misses, page_texts, count_causes, causes_markdown, CAUSES, MISS_K.
eval_retrieval.py asks Misses.explain(question, vector) for every missed question of a variant. A row holds
`evidence_in_corpus` (in any chunk of the index), `evidence_in_page` (in the page text the index was built
from; None: the question's page is not in the corpus), `page_rank` (the question's page among pages ranked
by their best chunk in the deep fused list), the rank of the best evidence-holding chunk in the dense-only,
BM25-only and fused lists (deep ranks over every chunk, the fused one over the retriever's candidate pool;
None: not in the list), and `cause` (cause(): pure, one of CAUSES). Text is compared whitespace-folded and
case-insensitively, as the hit test is. Rows carry ids, pages and ranks, no question or evidence text.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Sequence
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ragserve.config import Config
from ragserve.index.line import IndexLine, read_jsonl
from ragserve.index.store import IndexVersion
from ragserve.retrieval.retriever import Retriever

MISS_K = 10  # a question is a miss when no chunk of its top MISS_K holds the evidence
DEEP = 1000  # fused hits asked for the page ranking (a hybrid retriever ranks only its candidate pool)
CAUSES = ("extraction", "page missing", "split", "wrong page", "wrong chunk")


def folded(text: str) -> str:
    """Whitespace folded to single spaces, case folded: how evidence and chunk text are compared."""
    return " ".join(text.split()).casefold()


def same_page(url: str, source: str) -> bool:
    """Whether a chunk's source URL (or local path) is a question's `source`: a doc path (`library/json.html`,
    a folder's `tutorial/index.html` being the URL `/tutorial`) or a blog slug (`llama3` for `/blog/llama3`)."""
    path = "/" + urlsplit(url).path.strip("/")
    want = source.strip("/").removesuffix("index.html").rstrip("/")
    return path.endswith("/" + want) if want else path == "/"


def cause(in_chunks: bool, in_page: bool | None, page_rank: int | None) -> str:
    """Why a question missed. Evidence in no chunk: `page missing` (its page is not in the corpus, in_page None),
    `split` (in the page text, so a chunk boundary cut it) or `extraction` (not even in the page text). Evidence
    in a chunk: `wrong chunk` when the question's page ranks first, else `wrong page`."""
    if not in_chunks:
        if in_page is None:
            return "page missing"
        return "split" if in_page else "extraction"
    return "wrong chunk" if page_rank == 1 else "wrong page"


def page_texts(cfg: Config, index: IndexVersion) -> dict[str, str]:
    """The text of every page of the index's version (sources.jsonl), by URL or path."""
    rows = read_jsonl(IndexLine.of(cfg).folder(index.version) / "sources.jsonl")
    return {row["url"]: row["text"] for row in rows}


class Misses:
    """One index version's chunks, pages and rankings, to explain a variant's misses."""

    def __init__(self, index: IndexVersion, retriever: Retriever, pages: dict[str, str]) -> None:
        documents = index.documents()
        self.index, self.retriever = index, retriever
        self.texts = [folded(d.page_content) for d in documents]
        self.sources = [d.metadata.get("source", "") for d in documents]
        self.pages = {url: folded(text) for url, text in pages.items()}
        self.vectors = index.vectors()  # (chunks, dim), read once

    def explain(self, question: dict[str, Any], vector: np.ndarray) -> dict[str, Any]:
        """The miss row of an answerable question: where its evidence is, the ranks, the cause."""
        evidence, source = folded(question["evidence"]), question["source"]
        holders = [i for i, text in enumerate(self.texts) if evidence in text]
        page = next((url for url in self.pages if same_page(url, source)), None)
        in_page = None if page is None else evidence in self.pages[page]
        hits = self.retriever.search(vector[None, :], [question["question"]], DEEP)[0]
        fused = [int(hit.document.id) for hit in hits]  # positions, best first
        ranked_pages = list(dict.fromkeys(self.sources[i] for i in fused))  # pages by their best chunk
        page_rank = next((r for r, url in enumerate(ranked_pages, 1) if same_page(url, source)), None)
        return {
            "id": question["id"],
            "source": source,
            "evidence_in_corpus": bool(holders),
            "evidence_in_page": in_page,
            "page_rank": page_rank,
            "top_page": ranked_pages[0] if ranked_pages else None,
            "dense_rank": _best_rank(self._dense_order(vector), holders),
            "bm25_rank": _best_rank(self._bm25_order(question["question"]), holders),
            "fused_rank": _best_rank(fused, holders),
            "cause": cause(bool(holders), in_page, page_rank),
        }

    def _dense_order(self, vector: np.ndarray) -> list[int]:
        """Every chunk by the retriever's dense signal: the chunk's cosine (or L2 closeness), mixed with its best
        sentence window's cosine when the retriever uses windows (as Retriever._with_windows does), for the
        question vector as the retriever's search sees it (mapped by its query adapter, when it has one)."""
        adapter = getattr(self.retriever, "adapter", None)  # retrieval.query_adapter
        vector = adapter.apply(vector[None, :])[0] if adapter is not None else vector
        if self.index.metric == "cosine":
            signal = self.vectors @ vector  # (chunks,)
        else:
            signal = -np.sum((self.vectors - vector) ** 2, axis=1)  # (chunks,) closer is higher
        windows = self.retriever.windows
        if windows is not None:
            best = windows.best(vector[None, :], len(self.index))[0]  # (chunks,) -1: no window
            weight = self.retriever.cfg.window_weight
            signal = (1 - weight) * signal + weight * np.where(best > -1, best, signal)
        return np.argsort(-signal, kind="stable").tolist()

    def _bm25_order(self, question: str) -> list[int]:
        """The chunks BM25 scores above 0, best first."""
        scores = self.index.bm25.scores([question])[0]  # (chunks,)
        return [int(i) for i in np.argsort(-scores, kind="stable") if scores[i] > 0]


def _best_rank(ranking: Sequence[int], holders: Sequence[int]) -> int | None:
    """The 1-based rank of the first holder in ranking, None when none is in it."""
    wanted = set(holders)
    return next((rank for rank, i in enumerate(ranking, 1) if i in wanted), None)


def count_causes(rows: Iterable[dict[str, Any]]) -> dict[str, int]:
    """Misses per cause, every cause present (0 when none)."""
    counts = Counter(row["cause"] for row in rows)
    return {name: counts.get(name, 0) for name in CAUSES}


def causes_markdown(counts: dict[str, dict[str, int]]) -> str:
    """A table: one row per variant, its misses at MISS_K (answerable questions of every set) by cause."""
    lines = [
        f"**Misses at {MISS_K} by cause** (misses.jsonl: every miss with its ranks; extraction: the evidence is not "
        "in the page text the index was built from; split: it is, but no chunk holds it whole; wrong page: the "
        "question's page is not the top page of the fused ranking; wrong chunk: it is, another of its chunks won)",
        "",
        "| variant | misses | " + " | ".join(CAUSES) + " |",
        "|---" * (2 + len(CAUSES)) + "|",
    ]
    for variant, by_cause in counts.items():
        cells = " | ".join(str(by_cause[name]) for name in CAUSES)
        lines.append(f"| {variant} | {sum(by_cause.values())} | {cells} |")
    return "\n".join(lines) + "\n"
