"""The RAG endpoint's schema: Config and its sections (corpus, embedding, index, retrieval, rerank)."""

from __future__ import annotations

import dataclasses
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragserve.config.parsing import (
    _absolute,
    _build,
    _check,
    _handler_section,
    _local_or_hub,
    _sections,
    override,
    sections_of,
)
from ragserve.config.shared import DTYPES, CompileConfig, RuntimeConfig

DEFAULT_TEMPLATE = (
    "Use the following pieces of context to answer the question at the end. If you don't know "
    "the answer, just say that you don't know, don't try to make up an answer.\n\n"
    "{context}\n\nQuestion: {question}\nHelpful Answer:"
)


# The original demo's flat keys, and where each one lives in the grouped config.
FLAT_KEYS = {
    "url_to_scrape": ("corpus", "source"),
    "source": ("corpus", "source"),
    "chunk_size": ("corpus", "chunk_size"),
    "chunk_overlap": ("corpus", "chunk_overlap"),
    "model_path": ("embedding", "model_path"),
    "top_k": ("retrieval", "top_k"),
}


SPLITS = ("plain", "sections", "structure")  # corpus.split (ingest/corpus.py, ingest/structure.py)


@dataclass(frozen=True)
class CorpusConfig:
    """Where documents come from and how they are cut into chunks."""

    source: str = "corpus/ragserve-docs"  # URL to crawl (http/https) or a local file/folder (md, txt, html)
    max_depth: int = 2  # link hops followed from the start URL
    max_pages: int = 200  # crawl stops after this many HTML pages
    max_page_bytes: int = 5_000_000  # larger responses are skipped
    timeout_s: float = 10.0  # per HTTP request
    chunk_size: int = 1000  # chunk length in chunk_unit (RecursiveCharacterTextSplitter)
    chunk_overlap: int = 100  # length shared by neighbouring chunks, in chunk_unit
    chunk_unit: str = "chars"  # "chars", or "tokens" of the embedding model's tokenizer (measured: no gain)
    extract: str = "main"  # "main": <article>/<main> without nav/header/footer; "page": all text
    # "sections": cut at h1-h3 first (measured: no gain); "structure": sections and API entries, small ones merged,
    # code kept whole, each chunk headed by its heading path (ingest/structure.py)
    split: str = "structure"  # "plain": the splitter alone (the default until 2026-12-06); "sections": see above
    chunk_header: bool = False  # start each chunk with a "title > section" line (measured: no gain)
    exclude: list[str] = field(default_factory=list)  # glob patterns of paths under the source to skip, e.g. _sources/*
    include: list[str] = field(default_factory=list)  # glob patterns of the paths kept, after exclude (empty: all)
    robots: bool = True  # obey the site's robots.txt (RFC 9309, ingest/robots.py); false only for a site you run

    def __post_init__(self) -> None:
        _check(self.chunk_size > 0, "corpus.chunk_size must be > 0")
        _check(0 <= self.chunk_overlap < self.chunk_size, "corpus.chunk_overlap must be in [0, chunk_size)")
        _check(self.extract in ("main", "page"), "corpus.extract must be 'main' or 'page'")
        _check(self.split in SPLITS, f"corpus.split must be one of {SPLITS}")
        _check(self.chunk_unit in ("chars", "tokens"), "corpus.chunk_unit must be 'chars' or 'tokens'")
        _check(self.max_depth >= 0 and self.max_pages > 0, "corpus.max_depth/max_pages out of range")

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("http://", "https://"))


# embedding.backend: auto, per CPU architecture. x86_64: ONNX Runtime served 113.9 req/s against 100.6
# for torch eager and 95.3 for torch.compile (2 cores, docs/results/endpoints.md); aarch64
# (Graviton) keeps torch.compile, the design this project reproduces (not measured here).
AUTO_BACKENDS = {"x86_64": "onnxruntime", "AMD64": "onnxruntime", "aarch64": "torch", "arm64": "torch"}


@dataclass(frozen=True)
class EmbeddingConfig:
    """The sentence embedding model: sentence-transformers/all-mpnet-base-v2 by default."""

    model_path: str = "models/all-mpnet-base-v2"  # local sentence-transformers folder
    max_seq_length: int = 384  # tokens; longer texts are truncated (the model's trained limit)
    batch_size: int = 16  # texts per forward pass when embedding documents (batch_tokens 0)
    batch_tokens: int = 0  # > 0: a batch holds length-sorted texts up to this many padded tokens (GPU builds)
    dtype: str = "auto"  # torch backend: "auto" (float16 on CUDA, float32 on CPU), "float32", "float16", "bfloat16"
    pooling: str = "mean"  # "mean" (+ L2 norm, as trained) or "cls_pooler" (the demo's pooler_output)
    # "auto" is read once here, so everything after sees torch or onnxruntime.
    backend: str = "torch"  # "torch" (compile applies), "onnxruntime" (exported once) or "auto": measured best per CPU
    # int8: another model identity, so another index line and embedding cache. "auto" is read once here too.
    # int8 on onnxruntime (the gated default there): per-tensor dynamic; on torch: torchao, per-token, not gated yet
    precision: str = "fp32"  # "fp32", "int8" (smoothed, outliers in float32) or "auto": int8 on onnxruntime

    def __post_init__(self) -> None:
        _check(self.pooling in ("mean", "cls_pooler"), "embedding.pooling must be 'mean' or 'cls_pooler'")
        backends = ("torch", "onnxruntime", "auto")
        _check(self.backend in backends, "embedding.backend must be 'torch', 'onnxruntime' or 'auto'")
        if self.backend == "auto":
            object.__setattr__(self, "backend", AUTO_BACKENDS.get(platform.machine(), "torch"))
        _check(0 < self.max_seq_length <= 512, "embedding.max_seq_length must be in 1..512")
        _check(self.batch_size > 0, "embedding.batch_size must be > 0")
        _check(self.batch_tokens >= 0, "embedding.batch_tokens must be >= 0 (0: batch_size texts per batch)")
        _check(self.dtype in ("auto", *DTYPES), f"embedding.dtype must be 'auto' or one of {DTYPES}")
        _check(self.precision in ("fp32", "int8", "auto"), "embedding.precision must be 'fp32', 'int8' or 'auto'")
        if self.precision == "auto":  # int8 where hit@k gated it (ONNX Runtime), float32 on torch
            object.__setattr__(self, "precision", "int8" if self.backend == "onnxruntime" else "fp32")


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


@dataclass(frozen=True)
class Config:
    """The whole RAG endpoint configuration, one section per module."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    compile: CompileConfig = field(default_factory=CompileConfig)  # noqa: A003 - the YAML key
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    @property
    def uses_windows(self) -> bool:
        """Sentence windows take part in hybrid retrieval over cosine scores (not the demo's dense-only or l2)."""
        return self.retrieval.hybrid and self.retrieval.window_weight > 0 and self.index.metric == "cosine"

    def __post_init__(self) -> None:
        if self.corpus.chunk_unit == "tokens":  # a longer chunk would be cut at embedding time
            _check(
                self.corpus.chunk_size + 2 <= self.embedding.max_seq_length,
                "corpus.chunk_size (tokens) + 2 special tokens must fit embedding.max_seq_length",
            )
        _check(
            self.index.window_mode != "pooled" or self.embedding.pooling == "mean",
            "index.window_mode: pooled averages token embeddings: it needs embedding.pooling: mean",
        )

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any] | None, root: str | Path) -> Config:
        """Build from a model yaml's `handler:` section; relative paths resolve against root."""
        sections = _sections(mapping, SECTIONS, FLAT_KEYS)
        built = {name: _build(SECTIONS[name], name, values) for name, values in sections.items()}
        return cls(**built).resolve(Path(root))

    @classmethod
    def from_yaml(cls, path: str | Path, root: str | Path | None = None, changes: Mapping[str, Any] = {}) -> Config:  # noqa: B006
        """Read the `handler:` section of a TorchServe model yaml (root defaults to the cwd), with changes."""
        return cls.from_mapping(override(_handler_section(path), changes), root or Path.cwd())

    def resolve(self, root: Path) -> Config:
        """Return a copy whose relative local paths are absolute under root."""
        corpus = self.corpus
        if not corpus.is_url:
            corpus = dataclasses.replace(corpus, source=_absolute(corpus.source, root))
        cache_dir = self.compile.cache_dir and _absolute(self.compile.cache_dir, root)
        adapter = self.retrieval.query_adapter
        return dataclasses.replace(
            self,
            corpus=corpus,
            embedding=dataclasses.replace(self.embedding, model_path=_absolute(self.embedding.model_path, root)),
            compile=dataclasses.replace(self.compile, cache_dir=cache_dir),
            index=dataclasses.replace(self.index, dir=_absolute(self.index.dir, root)),
            rerank=dataclasses.replace(self.rerank, model=_local_or_hub(self.rerank.model, root)),
            retrieval=dataclasses.replace(self.retrieval, query_adapter=adapter and _absolute(adapter, root)),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


SECTIONS = sections_of(Config)
