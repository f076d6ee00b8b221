"""The LLM endpoint's schema: LLMConfig and its sections (model, generate, decode, grounding)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ragserve.config.parsing import (
    _absolute,
    _build,
    _check,
    _handler_section,
    _sections,
    override,
    sections_of,
)
from ragserve.config.shared import DTYPES, CompileConfig, RuntimeConfig

QUANTIZATIONS = ("int8_weight_only", "int4_weight_only", "float8_weight_only", "float8_dynamic")  # llm/quantization.py


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

    def sampling(self) -> dict[str, Any]:
        """A request's sampling when it asks for nothing: llm.generation.Sampling's fields (LLMQuery holds one)."""
        return {
            "max_new_tokens": self.max_new_tokens,
            "do_sample": self.do_sample,
            "temperature": self.temperature,
            "top_p": self.top_p,
            "repetition_penalty": self.repetition_penalty,
            "no_repeat_ngram_size": self.no_repeat_ngram_size,
        }

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
