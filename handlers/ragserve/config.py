"""Typed configuration for the RAG endpoint: the only code that reads YAML or raw dicts.

Public names: Config (the RAG endpoint: corpus, embedding, compile, index, retrieval sections),
LLMConfig (the LLM endpoint, flat keys) and ConfigError.
`Config.from_mapping(handler_section, root)` accepts the original demo's flat keys
(`url_to_scrape`, `chunk_size`, `chunk_overlap`, `model_path`, `compile`) as well as grouped
sections; unknown keys are errors. Relative paths are resolved once, against `root`.
"""

from __future__ import annotations

import dataclasses
import platform
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
    split: str = "plain"  # "plain": the splitter alone; "sections": cut at headings first (measured: no gain)
    chunk_header: bool = False  # start each chunk with a "title > section" line (measured: no gain)

    def __post_init__(self) -> None:
        _check(self.chunk_size > 0, "corpus.chunk_size must be > 0")
        _check(0 <= self.chunk_overlap < self.chunk_size, "corpus.chunk_overlap must be in [0, chunk_size)")
        _check(self.extract in ("main", "page"), "corpus.extract must be 'main' or 'page'")
        _check(self.split in ("sections", "plain"), "corpus.split must be 'sections' or 'plain'")
        _check(self.chunk_unit in ("chars", "tokens"), "corpus.chunk_unit must be 'chars' or 'tokens'")
        _check(self.max_depth >= 0 and self.max_pages > 0, "corpus.max_depth/max_pages out of range")

    @property
    def is_url(self) -> bool:
        return self.source.startswith(("http://", "https://"))


# embedding.backend: auto, per CPU architecture. x86_64: ONNX Runtime served 113.9 req/s against 100.6
# for torch eager and 95.3 for torch.compile (2 cores, README "The CPU RAG endpoint"); aarch64
# (Graviton) keeps torch.compile, the design this project reproduces (not measured here).
AUTO_BACKENDS = {"x86_64": "onnxruntime", "AMD64": "onnxruntime", "aarch64": "torch", "arm64": "torch"}


@dataclass(frozen=True)
class EmbeddingConfig:
    """The sentence embedding model: sentence-transformers/all-mpnet-base-v2 by default."""

    model_path: str = "models/all-mpnet-base-v2"  # local sentence-transformers folder
    max_seq_length: int = 384  # tokens; longer texts are truncated (the model's trained limit)
    batch_size: int = 16  # texts per forward pass when embedding documents
    pooling: str = "mean"  # "mean" (+ L2 norm, as trained) or "cls_pooler" (the demo's pooler_output)
    # "torch" (compile settings apply), "onnxruntime" (exported once, onnxrt.py) or "auto": the measured
    # best per platform (AUTO_BACKENDS), read once here so everything after sees torch or onnxruntime.
    backend: str = "torch"

    def __post_init__(self) -> None:
        _check(self.pooling in ("mean", "cls_pooler"), "embedding.pooling must be 'mean' or 'cls_pooler'")
        backends = ("torch", "onnxruntime", "auto")
        _check(self.backend in backends, "embedding.backend must be 'torch', 'onnxruntime' or 'auto'")
        if self.backend == "auto":
            object.__setattr__(self, "backend", AUTO_BACKENDS.get(platform.machine(), "torch"))
        _check(0 < self.max_seq_length <= 512, "embedding.max_seq_length must be in 1..512")
        _check(self.batch_size > 0, "embedding.batch_size must be > 0")


@dataclass(frozen=True)
class CompileConfig:
    """torch.compile policy for the encoder (see compilation.py)."""

    enabled: bool = True  # false runs eager
    backend: str = "inductor"
    mode: str | None = None  # e.g. "max-autotune"; exclusive with options
    options: dict[str, Any] = field(default_factory=lambda: {"freezing": True})
    cache_dir: str | None = "~/.cache/ragserve/inductor"  # persistent Inductor cache shared by workers

    def __post_init__(self) -> None:
        _check(not (self.mode and self.options), "compile.mode and compile.options are exclusive")


@dataclass(frozen=True)
class IndexConfig:
    """Where the index versions live (`<dir>/<line>/versions/`, store.py) and how workers read them."""

    dir: str = "index"
    follow_s: float = 2.0  # workers check the line's CURRENT this often and swap to a new version (0: never)
    keep_versions: int = 3  # versions a refresh keeps on disk (the live one, and the rest for rollback)
    metric: str = "cosine"  # "cosine" (inner product of unit vectors) or "l2" (the demo's)
    # BM25 terms (each setting is a line of its own: a refresh builds it from the embedding cache in
    # seconds, embedding nothing):
    bm25_numbers: bool = True  # keep numbers/versions ("3.1", "8B", "128,256"); false: bm25s' 2+ letter words
    bm25_title: bool = True  # index each chunk's page title with its text
    bm25_metadata: bool = True  # and its page's date (as words: "April 2024", "spring 2024"), authors, tags
    mmap: bool = True  # map the vectors read-only: the workers of a node share one copy of their pages
    search_threads: int = 1  # FAISS and numpy BLAS threads per worker (0: every core): index.set_search_threads
    # Sentence windows (windows.py; embedded with the index when retrieval.window_weight > 0: changing
    # these embeds the new windows, never the chunks, which the embedding cache holds):
    window_sentences: int = 3  # sentences per window
    window_stride: int = 2  # a new window every this many sentences

    def __post_init__(self) -> None:
        _check(self.metric in ("cosine", "l2"), "index.metric must be 'cosine' or 'l2'")
        _check(self.search_threads >= 0, "index.search_threads must be >= 0")
        _check(self.follow_s >= 0, "index.follow_s must be >= 0 (0: workers never swap)")
        _check(self.keep_versions >= 2, "index.keep_versions must be >= 2 (the live version and one to roll back to)")
        _check(self.window_sentences >= 1, "index.window_sentences must be >= 1")
        _check(1 <= self.window_stride <= self.window_sentences, "index.window_stride must be in 1..window_sentences")


@dataclass(frozen=True)
class RetrievalConfig:
    """Per-request limits and the prompt template."""

    top_k: int = 5  # chunks put in the prompt when the request names no k
    max_k: int = 50  # largest k a request may ask for
    max_question_chars: int = 2000  # longer questions are rejected with HTTP 413
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

    def __post_init__(self) -> None:
        _check(1 <= self.top_k <= self.max_k, "retrieval.top_k must be in 1..max_k")
        _check(self.candidates >= self.max_k, "retrieval.candidates must be >= retrieval.max_k")
        _check(self.fusion in ("convex", "rrf"), "retrieval.fusion must be 'convex' or 'rrf'")
        _check(0.0 <= self.dense_weight <= 1.0, "retrieval.dense_weight must be in [0, 1]")
        _check(0.0 <= self.page_weight < 1.0, "retrieval.page_weight must be in [0, 1)")
        _check(0.0 <= self.page_dense_weight <= 1.0, "retrieval.page_dense_weight must be in [0, 1]")
        _check(self.page_candidates >= 0, "retrieval.page_candidates must be >= 0")
        _check(0.0 <= self.window_weight <= 1.0, "retrieval.window_weight must be in [0, 1]")
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


SECTIONS = {
    "corpus": CorpusConfig,
    "embedding": EmbeddingConfig,
    "compile": CompileConfig,
    "index": IndexConfig,
    "retrieval": RetrievalConfig,
    "rerank": RerankConfig,
}


@dataclass(frozen=True)
class Config:
    """The whole RAG endpoint configuration, one section per module."""

    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    embedding: EmbeddingConfig = field(default_factory=EmbeddingConfig)
    compile: CompileConfig = field(default_factory=CompileConfig)  # noqa: A003 - the YAML key
    index: IndexConfig = field(default_factory=IndexConfig)
    retrieval: RetrievalConfig = field(default_factory=RetrievalConfig)
    rerank: RerankConfig = field(default_factory=RerankConfig)

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

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any] | None, root: str | Path) -> Config:
        """Build from a model yaml's `handler:` section; relative paths resolve against root."""
        sections: dict[str, dict[str, Any]] = {name: {} for name in SECTIONS}
        for key, value in (mapping or {}).items():
            if key in IGNORED_KEYS:
                continue
            if key == "compile" and isinstance(value, bool):
                sections["compile"]["enabled"] = value
            elif key in SECTIONS and isinstance(value, dict):
                sections[key].update(value)
            elif key in FLAT_KEYS:
                section, name = FLAT_KEYS[key]
                sections[section][name] = value
            else:
                raise ConfigError(f"unknown handler key {key!r}")
        built = {name: _build(SECTIONS[name], name, values) for name, values in sections.items()}
        return cls(**built).resolve(Path(root))

    @classmethod
    def from_yaml(cls, path: str | Path, root: str | Path | None = None) -> Config:
        """Read the `handler:` section of a TorchServe model yaml (root defaults to the cwd)."""
        return cls.from_mapping(_handler_section(path), root or Path.cwd())

    def resolve(self, root: Path) -> Config:
        """Return a copy whose relative local paths are absolute under root."""
        corpus = self.corpus
        if not corpus.is_url:
            corpus = dataclasses.replace(corpus, source=_absolute(corpus.source, root))
        cache_dir = self.compile.cache_dir and _absolute(self.compile.cache_dir, root)
        return dataclasses.replace(
            self,
            corpus=corpus,
            embedding=dataclasses.replace(self.embedding, model_path=_absolute(self.embedding.model_path, root)),
            compile=dataclasses.replace(self.compile, cache_dir=cache_dir),
            index=dataclasses.replace(self.index, dir=_absolute(self.index.dir, root)),
            rerank=dataclasses.replace(self.rerank, model=_local_or_hub(self.rerank.model, root)),
        )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class LLMConfig:
    """The LLM endpoint: any Hugging Face causal LM, and the limits a request may ask for."""

    model_path: str | None = "models/smollm2-135m-instruct"  # local HF folder (relative to the archive)
    model_id: str | None = None  # hub id, used when model_path is unset (needs internet)
    revision: str | None = None  # hub commit to pin with model_id
    dtype: str = "float32"  # float32 | bfloat16 | float16 (float16/bfloat16 on GPU)
    device_map: str | None = None  # "auto" spreads a big model over the GPUs (accelerate); None: one device
    max_new_tokens: int = 256  # default per request
    max_new_tokens_limit: int = 1024  # the most a request may ask for
    max_input_tokens: int | None = None  # None: the model's context length; longer prompts get 413
    max_prompt_chars: int = 100_000  # checked before tokenizing; longer prompts get 413
    do_sample: bool = False  # greedy by default: the same prompt gives the same answer
    temperature: float = 0.7  # used when sampling
    top_p: float = 0.9  # used when sampling
    # Loop breakers (a 135M model greedy-decoding a long RAG prompt repeats itself without them):
    repetition_penalty: float = 1.0  # > 1 divides the logits of tokens already in the text; 1 = off
    repetition_penalty_limit: float = 2.0  # the most a request may ask for
    no_repeat_ngram_size: int = 0  # > 0: no n-gram of this many tokens appears twice; 0 = off
    no_repeat_ngram_size_limit: int = 10  # the most a request may ask for
    use_chat_template: bool = True  # wrap the prompt as a user message with the tokenizer's template
    system_prompt: str | None = None  # optional system message in the chat template
    threads: int | None = None  # torch threads per worker on CPU (None: torch's default)
    # Compiled decode (static KV cache + torch.compile through transformers' generate, see generation.py):
    compile: bool | None = None  # noqa: A003 - the YAML key; None: on for CUDA, off on CPU (measured slower)
    compile_mode: str | None = None  # torch.compile mode; None: "reduce-overhead" (CUDA graphs) on CUDA, default on CPU
    batch_buckets: list[int] = field(default_factory=lambda: [1, 2, 4])  # batch sizes compiled; larger batches split
    cache_buckets: list[int] = field(default_factory=lambda: [1024, 2048, 4096])  # KV cache lengths compiled (tokens)
    compile_cache_dir: str | None = "~/.cache/ragserve/inductor"  # persistent Inductor cache across restarts
    # In-flight decode (inflight.py, transformers' continuous batching; with the frontend key continuousBatching: true):
    continuous_batching: bool = False  # requests join a running decode; false: TorchServe's batches decode in turn
    inflight_step_tokens: int = 256  # tokens one in-flight forward step holds: longer prompts are prefilled in pieces
    # Chat grounded on retrieval (the OpenAI route's `<model>-rag` model or `rag` field; ragclient.py):
    rag_url: str | None = None  # the RAG endpoint's JSON contract, e.g. http://rag-host:8080/predictions/rag; None: off
    rag_key_file: str | None = None  # its TorchServe key_file.json (or the key alone); None: forward the caller's key
    rag_timeout_s: float = 30.0  # per RAG request

    def __post_init__(self) -> None:
        _check(bool(self.model_path or self.model_id), "handler.model_path or handler.model_id is required")
        _check(self.inflight_step_tokens > 0, "handler.inflight_step_tokens must be > 0")
        _check(
            self.rag_url is None or self.rag_url.startswith(("http://", "https://")),
            "handler.rag_url must be an http(s) URL of the RAG endpoint",
        )
        _check(self.rag_timeout_s > 0, "handler.rag_timeout_s must be > 0")
        if self.continuous_batching:  # transformers' continuous batching drops these logits processors
            _check(
                self.repetition_penalty == 1.0 and self.no_repeat_ngram_size == 0,
                "handler.continuous_batching: transformers' in-flight decode has no repetition_penalty or "
                "no_repeat_ngram_size; set them to 1.0 and 0, or continuous_batching: false",
            )
            _check(not self.compile, "handler.compile: the static-cache compiled decode is the batch path's only")
        _check(
            bool(self.batch_buckets) and all(isinstance(b, int) and b > 0 for b in self.batch_buckets),
            "handler.batch_buckets must be a list of positive integers",
        )
        _check(
            bool(self.cache_buckets) and all(isinstance(n, int) and n > 0 for n in self.cache_buckets),
            "handler.cache_buckets must be a list of positive integers",
        )
        _check(self.dtype in DTYPES, f"handler.dtype must be one of {DTYPES}")
        _check(0 < self.max_new_tokens <= self.max_new_tokens_limit, "handler.max_new_tokens out of range")
        _check(self.temperature > 0 and 0 < self.top_p <= 1, "handler.temperature/top_p out of range")
        _check(
            1.0 <= self.repetition_penalty <= self.repetition_penalty_limit,
            "handler.repetition_penalty must be in 1..repetition_penalty_limit",
        )
        _check(
            0 <= self.no_repeat_ngram_size <= self.no_repeat_ngram_size_limit,
            "handler.no_repeat_ngram_size must be in 0..no_repeat_ngram_size_limit",
        )

    @classmethod
    def from_mapping(cls, mapping: dict[str, Any] | None, root: str | Path) -> LLMConfig:
        values = {k: v for k, v in (mapping or {}).items() if k not in IGNORED_KEYS}
        if values.get("model_id") and "model_path" not in values:
            values["model_path"] = None  # an explicit hub id replaces the offline default
        cfg = _build(cls, "", values)
        if cfg.model_path:
            cfg = dataclasses.replace(cfg, model_path=_absolute(cfg.model_path, Path(root)))
        if cfg.compile_cache_dir:
            cfg = dataclasses.replace(cfg, compile_cache_dir=_absolute(cfg.compile_cache_dir, Path(root)))
        if cfg.rag_key_file:
            cfg = dataclasses.replace(cfg, rag_key_file=_absolute(cfg.rag_key_file, Path(root)))
        return cfg

    @classmethod
    def from_yaml(cls, path: str | Path, root: str | Path | None = None) -> LLMConfig:
        return cls.from_mapping(_handler_section(path), root or Path.cwd())


def _handler_section(path: str | Path) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        doc = yaml.safe_load(f) or {}
    return doc.get("handler") or {}


def _build(section_cls: type, name: str, values: dict[str, Any]) -> Any:
    known = {f.name for f in dataclasses.fields(section_cls)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigError(f"unknown key(s) in handler{'.' if name else ''}{name}: {', '.join(unknown)}")
    try:
        return section_cls(**values)
    except TypeError as err:
        raise ConfigError(f"handler.{name}: {err}") from err


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
