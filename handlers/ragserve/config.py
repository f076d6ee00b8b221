"""Typed configuration of both endpoints: the only code that reads YAML or raw dicts.

Public names: Config (the RAG endpoint), LLMConfig (the LLM endpoint), ConfigError, override,
assignment (a command line's --set), config_arguments (--config, --set, --root), reference_markdown.
Both are one shape: a model yaml's `handler:` section holds named sections, each a frozen dataclass
whose fields are the keys, with their defaults (defaults live here and nowhere else). The sections
`compile` (torch.compile) and `runtime` (device and threads) are the same classes in both endpoints.
Values are checked at start-up, by type and by range; an error names the key (`handler.retrieval.top_k`).
`Config.from_mapping` also accepts the original demo's flat keys (`url_to_scrape`, `chunk_size`,
`chunk_overlap`, `model_path`, `compile`). Relative paths resolve once, against `root`.
`override(mapping, {"retrieval.top_k": 3})` is the one way code changes settings: dotted keys into a
mapping that then goes through the same parser. `python -m ragserve.config` prints the reference
(docs/configuration.md holds it; a test keeps the two equal).
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
import platform
import re
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

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
IGNORED_KEYS = {"profile"}  # TorchServe's own `handler.profile` switch
DTYPES = ("float32", "bfloat16", "float16")
SPLITS = ("plain", "sections", "structure")  # corpus.split (ingest/corpus.py, ingest/structure.py)
QUANTIZATIONS = ("int8_weight_only", "int4_weight_only", "float8_weight_only", "float8_dynamic")  # llm/quantization.py


class ConfigError(ValueError):
    """A config value is missing, unknown or out of range; the message names the YAML key."""


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
    # another model identity, so another index line and embedding cache
    precision: str = "fp32"  # "fp32" or "int8" (onnxruntime backend: smoothed export, outliers in float32; int8.py)

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
        _check(self.precision in ("fp32", "int8"), "embedding.precision must be 'fp32' or 'int8'")
        _check(
            self.precision == "fp32" or self.backend == "onnxruntime",
            "embedding.precision int8 runs on embedding.backend onnxruntime only (the torch backend has no int8 path)",
        )


@dataclass(frozen=True)
class CompileConfig:
    """torch.compile, for the encoder and the LLM decode alike (compilation.py)."""

    enabled: bool | None = None  # None: the measured default (encoder: on; LLM decode: on for CUDA, off on CPU)
    backend: str = "inductor"  # torch.compile backend
    mode: str | None = None  # None: the default mode ("reduce-overhead", i.e. CUDA graphs, for the LLM on CUDA)
    options: dict[str, Any] | None = None  # Inductor options, exclusive with mode; None: {"freezing": true} (encoder)
    cache_dir: str | None = "~/.cache/ragserve/inductor"  # persistent Inductor cache, shared by workers and restarts

    def __post_init__(self) -> None:
        _check(not (self.mode and self.options), "compile.mode and compile.options are exclusive")

    def on(self, default: bool) -> bool:
        """Whether to compile, given the caller's default for `enabled: null`."""
        return default if self.enabled is None else self.enabled


@dataclass(frozen=True)
class RuntimeConfig:
    """Where a worker computes and with how many threads; applied once at start (runtime.py)."""

    device: str = "auto"  # "auto": the GPU TorchServe assigns, if any, else the CPU; "cpu": CPU even on a GPU host
    threads: int | None = None  # torch and ONNX Runtime threads; None: OMP_NUM_THREADS, else cores / minWorkers
    search_threads: int = 1  # RAG: FAISS and numpy BLAS threads per worker (0: every core)

    def __post_init__(self) -> None:
        _check(self.device in ("auto", "cpu"), "runtime.device must be 'auto' or 'cpu'")
        _check(self.threads is None or self.threads > 0, "runtime.threads must be > 0 (or null)")
        _check(self.search_threads >= 0, "runtime.search_threads must be >= 0")


@dataclass(frozen=True)
class IndexConfig:
    """Where the index versions live (`<dir>/<line>/versions/`, store.py) and how workers read them."""

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
    bm25_identifiers: bool = True  # and identifiers: "json.dumps", "-X" whole; "skip_keys" as skip, keys (lexical.py)
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
    template: str = DEFAULT_TEMPLATE  # must contain {context} and {question}
    hybrid: bool = True  # fuse dense (FAISS) and lexical (BM25) results; false: dense only (the demo's)
    fusion: str = "convex"  # "convex": weighted sum of min-max normalised scores; "rrf": reciprocal rank fusion
    dense_weight: float = 0.5  # convex: the dense share (0 = BM25 alone, 1 = dense alone)
    candidates: int = 50  # chunks each ranking contributes to the fusion
    rrf_k: int = 60  # reciprocal rank fusion constant: 1 / (rrf_k + rank)
    page_weight: float = 0.2  # share of a chunk's page score in its final score (0: no page level)
    page_dense_weight: float = 0.3  # dense share of a page's score (its best vector vs BM25 on its record)
    page_candidates: int = 5  # every chunk of the best pages joins the candidates
    window_weight: float = 0.3  # share of a chunk's best sentence window in its dense score (0: no windows)
    window_search: str = "pool"  # "pool": the candidates' windows only (same hits, measured); "all": every window
    # embedding/adapter.py: applied to the question vectors only (the index is never re-embedded), before the chunk,
    # page and sentence-window scores; relative to the archive folder, e.g. index/adapters/<line>-<id>.safetensors
    query_adapter: str | None = None  # `make adapt`'s file: maps question vectors before dense search; null: none

    def __post_init__(self) -> None:
        _check(1 <= self.top_k <= self.max_k, "retrieval.top_k must be in 1..max_k")
        _check(self.max_embedding_inputs >= 1, "retrieval.max_embedding_inputs must be >= 1")
        _check(self.max_embedding_chars >= 1, "retrieval.max_embedding_chars must be >= 1")
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


def sections_of(config_cls: type) -> dict[str, type]:
    """A whole config's sections, {yaml key: section dataclass}, read from its fields."""
    hints = typing.get_type_hints(config_cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(config_cls)}


SECTIONS = sections_of(Config)


@dataclass(frozen=True)
class ModelConfig:
    """Which causal LM: any Hugging Face model, from a local folder or the hub."""

    path: str | None = "models/smollm2-135m-instruct"  # local HF folder (relative to the archive)
    id: str | None = None  # noqa: A003 - the YAML key; hub id, used when path is null (needs internet)
    revision: str | None = None  # hub commit to pin with id
    dtype: str = "float32"  # float32 | bfloat16 | float16 (float16/bfloat16 on GPU)
    device_map: str | None = None  # "auto" spreads a big model over the GPUs (accelerate); null: one device
    quantization: str | None = None  # torchao weights: int8_weight_only | int4_weight_only | float8_* ; null: none

    def __post_init__(self) -> None:
        _check(bool(self.path or self.id), "model.path or model.id is required")
        _check(self.dtype in DTYPES, f"model.dtype must be one of {DTYPES}")
        _check(
            self.quantization in (None, *QUANTIZATIONS), f"model.quantization must be null or one of {QUANTIZATIONS}"
        )


@dataclass(frozen=True)
class GenerateConfig:
    """Per-request defaults and the limits a request may ask for."""

    max_new_tokens: int = 256  # default per request
    max_new_tokens_limit: int = 1024  # the most a request may ask for
    max_input_tokens: int | None = None  # null: the model's context length; longer prompts get 413
    max_prompt_chars: int = 100_000  # checked before tokenizing; longer prompts get 413
    do_sample: bool = False  # greedy by default: the same prompt gives the same answer
    temperature: float = 0.7  # used when sampling
    top_p: float = 0.9  # used when sampling
    repetition_penalty: float = 1.0  # loop breaker: > 1 divides the logits of tokens already in the text; 1 = off
    repetition_penalty_limit: float = 2.0  # the most a request may ask for
    no_repeat_ngram_size: int = 0  # loop breaker: > 0, no n-gram of this many tokens appears twice; 0 = off
    no_repeat_ngram_size_limit: int = 10  # the most a request may ask for
    use_chat_template: bool = True  # wrap the prompt as a user message with the tokenizer's template
    system_prompt: str | None = None  # optional system message in the chat template

    def __post_init__(self) -> None:
        _check(0 < self.max_new_tokens <= self.max_new_tokens_limit, "generate.max_new_tokens out of range")
        _check(self.max_input_tokens is None or self.max_input_tokens > 0, "generate.max_input_tokens must be > 0")
        _check(self.max_prompt_chars > 0, "generate.max_prompt_chars must be > 0")
        _check(self.temperature > 0 and 0 < self.top_p <= 1, "generate.temperature/top_p out of range")
        _check(
            1.0 <= self.repetition_penalty <= self.repetition_penalty_limit,
            "generate.repetition_penalty must be in 1..repetition_penalty_limit",
        )
        _check(
            0 <= self.no_repeat_ngram_size <= self.no_repeat_ngram_size_limit,
            "generate.no_repeat_ngram_size must be in 0..no_repeat_ngram_size_limit",
        )


@dataclass(frozen=True)
class DecodeConfig:
    """How requests are decoded together: compiled shape buckets (batch path) or in-flight batching."""

    batch_buckets: list[int] = field(default_factory=lambda: [1, 2, 4])  # compiled batch sizes; larger batches split
    cache_buckets: list[int] = field(default_factory=lambda: [1024, 2048, 4096])  # compiled KV cache lengths (tokens)
    continuous_batching: bool = False  # requests join a running decode (with the frontend's continuousBatching: true)
    inflight_step_tokens: int = 256  # tokens one in-flight forward step holds: longer prompts prefill in pieces
    inflight_cuda_graphs: bool | None = None  # in-flight steps replay CUDA graphs; None: on where there is CUDA

    def __post_init__(self) -> None:
        _check(bool(self.batch_buckets) and min(self.batch_buckets) > 0, "decode.batch_buckets must be positive")
        _check(bool(self.cache_buckets) and min(self.cache_buckets) > 0, "decode.cache_buckets must be positive")
        _check(self.inflight_step_tokens > 0, "decode.inflight_step_tokens must be > 0")


@dataclass(frozen=True)
class GroundingConfig:
    """Chat grounded on retrieval (the `<model>-rag` model or `rag` field of v1/chat/completions)."""

    url: str | None = None  # the RAG endpoint's JSON contract, e.g. http://rag-host:8080/predictions/rag; null: off
    key_file: str | None = None  # its TorchServe key_file.json (or the key alone); null: forward the caller's key
    timeout_s: float = 30.0  # per RAG request

    def __post_init__(self) -> None:
        _check(self.url is None or self.url.startswith(("http://", "https://")), "rag.url must be an http(s) URL")
        _check(self.timeout_s > 0, "rag.timeout_s must be > 0")


@dataclass(frozen=True)
class LLMConfig:
    """The whole LLM endpoint configuration, one section per concern."""

    model: ModelConfig = field(default_factory=ModelConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    decode: DecodeConfig = field(default_factory=DecodeConfig)
    rag: GroundingConfig = field(default_factory=GroundingConfig)
    compile: CompileConfig = field(default_factory=CompileConfig)  # noqa: A003 - the YAML key
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def __post_init__(self) -> None:
        if self.decode.continuous_batching:  # transformers' continuous batching drops these logits processors
            _check(
                self.generate.repetition_penalty == 1.0 and self.generate.no_repeat_ngram_size == 0,
                "decode.continuous_batching: transformers' in-flight decode has no repetition_penalty or "
                "no_repeat_ngram_size; set generate.repetition_penalty: 1.0 and generate.no_repeat_ngram_size: 0, "
                "or decode.continuous_batching: false",
            )

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any] | None, root: str | Path) -> LLMConfig:
        sections = _sections(mapping, LLM_SECTIONS, {})
        if sections["model"].get("id") and "path" not in sections["model"]:
            sections["model"]["path"] = None  # an explicit hub id replaces the offline default
        cfg = cls(**{name: _build(LLM_SECTIONS[name], name, values) for name, values in sections.items()})
        root = Path(root)
        model_path = cfg.model.path and _absolute(cfg.model.path, root)
        cache_dir = cfg.compile.cache_dir and _absolute(cfg.compile.cache_dir, root)
        key_file = cfg.rag.key_file and _absolute(cfg.rag.key_file, root)
        return dataclasses.replace(
            cfg,
            model=dataclasses.replace(cfg.model, path=model_path),
            compile=dataclasses.replace(cfg.compile, cache_dir=cache_dir),
            rag=dataclasses.replace(cfg.rag, key_file=key_file),
        )

    @classmethod
    def from_yaml(cls, path: str | Path, root: str | Path | None = None, changes: Mapping[str, Any] = {}) -> LLMConfig:  # noqa: B006
        return cls.from_mapping(override(_handler_section(path), changes), root or Path.cwd())

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


LLM_SECTIONS = sections_of(LLMConfig)


def override(mapping: Mapping[str, Any] | None, changes: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of a handler mapping with changes applied: dotted keys ({"retrieval.top_k": 3}) or sections
    ({"retrieval": {"top_k": 3}}), a section merged into the one it changes, any other value replacing."""
    result = copy.deepcopy(dict(mapping or {}))
    for dotted, value in changes.items():
        *path, last = dotted.split(".")
        node = result
        for part in path:
            child = node.get(part)
            node[part] = child = dict(child) if isinstance(child, dict) else {}
            node = child
        if isinstance(value, Mapping) and isinstance(node.get(last), dict):
            node[last] = override(node[last], value)
        else:
            node[last] = copy.deepcopy(value)
    return result


def config_arguments(parser: Any, root: Path, example: str = "corpus.max_pages=500") -> None:
    """The command-line arguments every config-reading script shares: --config, --set KEY=VALUE (repeatable, through
    `assignment`) and --root (where the yaml's relative paths resolve)."""
    parser.add_argument("--config", default="configs/rag-docs.yaml")
    parser.add_argument("--set", type=assignment, action="append", default=[], metavar="KEY=VALUE",
                        help=f"change a handler setting, e.g. --set {example} (repeatable)")  # fmt: skip
    parser.add_argument("--root", type=Path, default=root, help="resolve the yaml's relative paths here")


def assignment(text: str) -> tuple[str, Any]:
    """A command line's `--set retrieval.top_k=3` as (dotted key, YAML value), for override()."""
    key, sep, value = text.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set expects KEY=VALUE (e.g. retrieval.top_k=3), got {text!r}")
    return key.strip(), yaml.safe_load(value)


def reference_markdown() -> str:
    """The configuration reference: every key of both endpoints, its type, default and meaning."""
    lines = []
    for title, sections in (("RAG endpoint (`Config`)", SECTIONS), ("LLM endpoint (`LLMConfig`)", LLM_SECTIONS)):
        lines += [f"### {title}", "", "| key | type | default | meaning |", "|---|---|---|---|"]
        for name, section_cls in sections.items():
            for key, kind, default, doc in _documented_fields(section_cls):
                lines.append(f"| `{name}.{key}` | `{kind}` | `{default}` | {doc} |")
        lines.append("")
    return "\n".join(lines)


def _documented_fields(section_cls: type) -> list[tuple[str, str, str, str]]:
    """(name, type, default, the field's trailing comment) per field, read from the class source."""
    comments = {}
    for line in inspect.getsource(section_cls).splitlines():
        match = re.match(r"    (\w+): [^#]*?#\s*(?:noqa: \w+ - the YAML key;?\s*)?(.*)$", line)
        if match:
            comments[match.group(1)] = match.group(2).replace("|", "\\|")
    hints = typing.get_type_hints(section_cls)
    rows = []
    for f in dataclasses.fields(section_cls):
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default
        shown = yaml.safe_dump(default, default_flow_style=True, width=10_000).strip().removesuffix("...").strip()
        shown = "(see below)" if len(shown) > 60 else shown.replace("|", "\\|")
        kind = str(hints[f.name]).replace("typing.", "").replace("NoneType", "None")
        kind = re.sub(r"<class '(\w+)'>", r"\1", kind).replace("|", "\\|")
        rows.append((f.name, kind, shown, comments.get(f.name, "")))
    return rows


def _sections(
    mapping: Mapping[str, Any] | None, sections: Mapping[str, type], flat: Mapping[str, tuple[str, str]]
) -> dict[str, dict[str, Any]]:
    """The handler mapping grouped by section (a bare `compile: bool` is compile.enabled)."""
    grouped: dict[str, dict[str, Any]] = {name: {} for name in sections}
    for key, value in (mapping or {}).items():
        if key in IGNORED_KEYS:
            continue
        if key == "compile" and isinstance(value, bool):
            grouped["compile"]["enabled"] = value
        elif key in sections and isinstance(value, dict):
            grouped[key].update(value)
        elif key in flat:
            section, name = flat[key]
            grouped[section][name] = value
        else:
            raise ConfigError(f"unknown handler key {key!r}{_moved(key, sections)}; sections: {', '.join(sections)}")
    return grouped


def _moved(key: str, sections: Mapping[str, type]) -> str:
    """Where a flat key of an older config now lives (LLM keys were flat before the sections)."""
    for name, section_cls in sections.items():
        for f in dataclasses.fields(section_cls):
            if key in (f.name, f"{name}_{f.name}", f"model_{f.name}", f"compile_{f.name}", f"rag_{f.name}"):
                return f" (now {name}.{f.name})"
    return ""


def _handler_section(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    return doc.get("handler") or {}


def _build(section_cls: type, name: str, values: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in handler.{name}: {', '.join(unknown)}; known: {', '.join(sorted(known))}")
    hints = typing.get_type_hints(section_cls)
    for key, value in values.items():
        if not _is_a(value, hints[key]):
            shown = str(hints[key]).replace("typing.", "").replace("NoneType", "None")
            shown = re.sub(r"<class '(\w+)'>", r"\1", shown)
            raise ConfigError(f"handler.{name}.{key} must be {shown}, got {value!r} ({type(value).__name__})")
    return section_cls(**values)


def _is_a(value: Any, hint: Any) -> bool:
    """Whether a YAML value fits a field's type hint (an int is a float; a bool is not an int)."""
    origin = typing.get_origin(hint)
    if hint is Any:
        return True
    if origin in (typing.Union, types.UnionType):
        return any(_is_a(value, arg) for arg in typing.get_args(hint))
    if hint is type(None):
        return value is None
    if origin is list:
        return isinstance(value, list) and all(_is_a(v, typing.get_args(hint)[0]) for v in value)
    if origin is dict:
        return isinstance(value, dict)
    if hint is float:
        return isinstance(value, int | float) and not isinstance(value, bool)
    if hint is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, hint)


def _absolute(path: str, root: Path) -> str:
    expanded = Path(path).expanduser()
    return str(expanded if expanded.is_absolute() else (root / expanded).resolve())


def _local_or_hub(name: str | None, root: Path) -> str | None:
    """A folder that exists under root (or an absolute path) becomes absolute; anything else is a hub id."""
    if name is None or Path(name).expanduser().is_absolute():
        return name and str(Path(name).expanduser())
    return str((root / name).resolve()) if (root / name).is_dir() else name


def _check(condition: bool, message: str) -> None:
    if not condition:
        raise ConfigError(message)


if __name__ == "__main__":
    print(reference_markdown())
