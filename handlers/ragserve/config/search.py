"""The RAG endpoint's search sections: index (where versions live, how they are searched), retrieval (hybrid
search, fusion, page and window scores) and rerank (the optional cross-encoder)."""

from __future__ import annotations

from dataclasses import dataclass

from ragserve.config.parsing import _check

# The original demo's Llama prompt, word for word (retrieval.template).
DEFAULT_TEMPLATE = (
    "Use the following pieces of context to answer the question at the end. If you don't know "
    "the answer, just say that you don't know, don't try to make up an answer.\n\n"
    "{context}\n\nQuestion: {question}\nHelpful Answer:"
)


@dataclass(frozen=True)
class IndexConfig:
    """Where the index versions live (`<dir>/<line>/versions/`, line.py) and how workers read them."""

    dir: str = "index"  # where the index lines live (relative to the archive folder)
    follow_s: float = 2.0  # workers check the line's CURRENT this often and swap to a new version (0: never)
    keep_versions: int = 3  # versions a refresh keeps on disk (the live one, and the rest for rollback)
    metric: str = "cosine"  # "cosine" (inner product of unit vectors) or "l2" (the demo's)
    # Approximate search past a size (index/ann.py; measured in benchmarks/ann_bench.py):
    kind: str = "auto"  # "flat" (exact scan), "hnsw", "ivf" or "auto": flat below ann_min_chunks, IVF from there
    ann_min_chunks: int = 100_000  # auto's threshold: past it a flat scan takes tens of ms per query
    hnsw_m: int = 32  # HNSW links per vector (build): more is slower to build and better at recall
    hnsw_ef_construction: int = 80  # HNSW candidates kept while building
    hnsw_ef_search: int = 128  # HNSW candidates kept per query (search time: no rebuild)
    ivf_lists: int = 0  # IVF clusters (build); 0: 4 x sqrt(chunks)
    ivf_probe: int = 32  # IVF clusters scanned per query (search time: no rebuild)
    # BM25 terms (each setting is a line of its own: a refresh builds it from the embedding cache in
    # seconds, embedding nothing):
    bm25_numbers: bool = True  # keep numbers/versions ("3.1", "8B", "128,256"); false: bm25s' 2+ letter words
    bm25_title: bool = True  # index each chunk's page title with its text
    bm25_metadata: bool = True  # and its page's date (as words: "April 2024", "spring 2024"), authors, tags
    bm25_identifiers: bool = True  # and identifiers: "json.dumps", "-X" whole; "skip_keys" as skip, keys (bm25.py)
    mmap: bool = True  # map the vectors read-only: the workers of a node share one copy of their pages
    # Sentence windows (windows.py; embedded with the index when retrieval.window_weight > 0: changing
    # these embeds the new windows, never the chunks, which the embedding cache holds):
    window_sentences: int = 3  # sentences per window
    window_stride: int = 3  # a new window every this many sentences (3/3: no overlap)
    window_mode: str = "encoded"  # "encoded": each window's own pass; "pooled": its chunk's token vectors averaged
    # Windows cost ~5.6 more encoder passes per chunk: an hour more on the whole Python docs on 2 CPU cores, where the
    # pooled ones did not help (docs/results/retrieval-quality.md). A version of more chunks is built without them.
    window_max_chunks: int = 5000  # versions of more chunks have no sentence windows (and search without them)

    def __post_init__(self) -> None:
        _check(self.metric in ("cosine", "l2"), "index.metric must be 'cosine' or 'l2'")
        _check(self.kind in ("flat", "hnsw", "ivf", "auto"), "index.kind must be 'flat', 'hnsw', 'ivf' or 'auto'")
        _check(self.ann_min_chunks > 0 and self.hnsw_m >= 4, "index.ann_min_chunks must be > 0, index.hnsw_m >= 4")
        _check(min(self.hnsw_ef_construction, self.hnsw_ef_search, self.ivf_probe) > 0, "index.hnsw_ef_*/ivf_probe > 0")
        _check(self.ivf_lists >= 0, "index.ivf_lists must be >= 0 (0: 4 x sqrt(chunks))")
        _check(self.follow_s >= 0, "index.follow_s must be >= 0 (0: workers never swap)")
        _check(self.keep_versions >= 2, "index.keep_versions must be >= 2 (the live version and one to roll back to)")
        _check(self.window_sentences >= 1, "index.window_sentences must be >= 1")
        _check(1 <= self.window_stride <= self.window_sentences, "index.window_stride must be in 1..window_sentences")
        _check(self.window_mode in ("encoded", "pooled"), "index.window_mode must be 'encoded' or 'pooled'")
        _check(self.window_max_chunks >= 0, "index.window_max_chunks must be >= 0")


@dataclass(frozen=True)
class RetrievalConfig:
    """Per-request limits and the prompt template."""

    top_k: int = 5  # chunks put in the prompt when the request names no k
    max_k: int = 50  # largest k a request may ask for
    max_question_chars: int = 2000  # longer questions are rejected with HTTP 413
    # v1/embeddings bounds, so one request holds a worker for about a second, not minutes (2,048 inputs did): TEI's
    # --max-client-batch-size default, and 32 inputs of 1,024 characters (about 8k tokens, half TEI's --max-batch-tokens
    # default of 16,384); the model reads only the first max_seq_length tokens of each input anyway
    max_embedding_inputs: int = 32  # v1/embeddings: most inputs per request (more: HTTP 413 naming `input`)
    max_embedding_chars: int = 32_768  # v1/embeddings: most characters per request, all inputs together (more: 413)
    max_embedding_tokens: int = 16_384  # v1/embeddings: most tokens per request, all inputs (TEI's default; 413)
    template: str = DEFAULT_TEMPLATE  # must contain {context} and {question}
    hybrid: bool = True  # fuse dense (FAISS) and lexical (BM25) results; false: dense only (the demo's)
    fusion: str = "convex"  # "convex": weighted sum of min-max normalised scores; "rrf": reciprocal rank fusion
    dense_weight: float = 0.5  # convex: the dense share (0 = BM25 alone, 1 = dense alone)
    candidates: int = 50  # chunks each ranking contributes to the fusion
    rrf_k: int = 60  # reciprocal rank fusion constant: 1 / (rrf_k + rank)
    page_weight: float = 0.2  # share of a chunk's page score in its final score (0: no page level)
    page_dense_weight: float = 0.3  # dense share of a page's score (its best vector vs BM25 on its record)
    page_candidates: int = 0  # every chunk of the best pages joins the candidates (5 measured worse: results/)
    window_weight: float = 0.3  # share of a chunk's best sentence window in its dense score (0: no windows)
    window_search: str = "pool"  # "pool": the candidates' windows only (same hits, measured); "all": every window
    # embedding/adapter.py: applied to the question vectors only (the index is never re-embedded), before the chunk,
    # page and sentence-window scores; relative to the archive folder, e.g. index/adapters/<line>-<id>.safetensors
    query_adapter: str | None = None  # `make adapt`'s file: maps question vectors before dense search; null: none

    def __post_init__(self) -> None:
        _check(1 <= self.top_k <= self.max_k, "retrieval.top_k must be in 1..max_k")
        _check(self.max_embedding_inputs >= 1, "retrieval.max_embedding_inputs must be >= 1")
        _check(self.max_embedding_chars >= 1, "retrieval.max_embedding_chars must be >= 1")
        _check(self.max_embedding_tokens >= 1, "retrieval.max_embedding_tokens must be >= 1")
        _check(
            self.query_adapter is None or self.query_adapter.endswith((".safetensors", ".npz")),
            "retrieval.query_adapter must be a .safetensors or .npz file of `make adapt` (or null)",
        )
        _check(self.candidates >= self.max_k, "retrieval.candidates must be >= retrieval.max_k")
        _check(self.fusion in ("convex", "rrf"), "retrieval.fusion must be 'convex' or 'rrf'")
        _check(0.0 <= self.dense_weight <= 1.0, "retrieval.dense_weight must be in [0, 1]")
        _check(0.0 <= self.page_weight < 1.0, "retrieval.page_weight must be in [0, 1)")
        _check(0.0 <= self.page_dense_weight <= 1.0, "retrieval.page_dense_weight must be in [0, 1]")
        _check(self.page_candidates >= 0, "retrieval.page_candidates must be >= 0")
        _check(0.0 <= self.window_weight <= 1.0, "retrieval.window_weight must be in [0, 1]")
        _check(self.window_search in ("all", "pool"), "retrieval.window_search must be 'all' or 'pool'")
        _check(
            "{context}" in self.template and "{question}" in self.template,
            "retrieval.template must contain {context} and {question}",
        )


@dataclass(frozen=True)
class RerankConfig:
    """Optional second stage (rerank.py): a cross-encoder reorders the retriever's best candidates."""

    model: str | None = None  # cross-encoder: Hugging Face id (needs internet) or local folder; None: off
    candidates: int = 20  # chunks retrieved per question for the cross-encoder to score (at least k)
    max_length: int = 512  # tokens of question + chunk the cross-encoder reads
    batch_size: int = 32  # pairs per forward pass

    def __post_init__(self) -> None:
        _check(self.candidates >= 1, "rerank.candidates must be >= 1")
        _check(self.max_length > 0 and self.batch_size > 0, "rerank.max_length and rerank.batch_size must be > 0")
