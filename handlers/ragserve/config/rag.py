"""The RAG endpoint's schema: Config and its corpus and embedding sections (index, retrieval and rerank: search.py)."""

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
from ragserve.config.search import IndexConfig, RerankConfig, RetrievalConfig
from ragserve.config.shared import DTYPES, CompileConfig, RuntimeConfig

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
