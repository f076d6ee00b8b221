"""Shared fixtures: the real models (models/, `model` mark), the tiny random ones (committed tokenizers, no download),
small local corpora and a loopback web server.

A test that reaches models/ (through `model_dir` or `llm_dir`) must carry the `model` mark: `make test-fast` runs
`-m "not model"` on a clone with nothing downloaded, and the check below keeps that tier honest."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ragserve.config import CompileConfig, EmbeddingConfig
from ragserve_ops.testing import (
    FIXTURES,
    HF_SITE,
    LLM_DIR,
    MODEL_DIR,
    TINY_LLAMA_TOKENIZER,
    TINY_MPNET_TOKENIZER,
    build_tiny_llm,
    serve_directory,
    tiny_llm_config,
)

REAL_MODEL_FIXTURES = {"model_dir", "llm_dir"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Refuse a test that needs models/ without the `model` mark: it would skip silently in `make test-fast`."""
    unmarked = [
        item.nodeid
        for item in items
        if REAL_MODEL_FIXTURES & set(getattr(item, "fixturenames", ())) and item.get_closest_marker("model") is None
    ]
    if unmarked:
        raise pytest.UsageError(f"these tests use models/ (model_dir, llm_dir) but are not marked `model`: {unmarked}")


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    """The small multi-page test site in tests/fixtures/site."""
    server, url = serve_directory(FIXTURES / "site")
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def hf_site_url() -> Iterator[str]:
    """The shared offline mirror of the Hugging Face blog (skipped when ../shared is absent)."""
    if not HF_SITE.is_dir():
        pytest.skip(f"{HF_SITE} is absent: the shared corpus is needed for the realistic crawl")
    server, url = serve_directory(HF_SITE)
    yield url
    server.shutdown()
    server.server_close()


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (MODEL_DIR / "model.safetensors").is_file():
        pytest.skip(f"{MODEL_DIR} is missing: run `make models`")
    return MODEL_DIR


@pytest.fixture(scope="session")
def embedding_cfg(model_dir: Path) -> EmbeddingConfig:
    return EmbeddingConfig(model_path=str(model_dir), batch_size=4)


@pytest.fixture(scope="session")
def encoder(embedding_cfg: EmbeddingConfig):
    """The real all-mpnet-base-v2, eager (loaded once per session)."""
    from ragserve.embedding.encoder import Encoder

    return Encoder(embedding_cfg, CompileConfig(enabled=False))


@pytest.fixture(scope="session")
def llm_dir() -> Path:
    if not (LLM_DIR / "model.safetensors").is_file():
        pytest.skip(f"{LLM_DIR} is missing: run `make models`")
    return LLM_DIR


@pytest.fixture(scope="session")
def generator(llm_dir: Path):
    """The real SmolLM2-135M-Instruct on CPU, float32, greedy (loaded once per session)."""
    from ragserve.config import LLMConfig
    from ragserve.llm.generation import Generator

    return Generator(
        LLMConfig.from_mapping({"model": {"path": str(llm_dir)}, "generate": {"max_input_tokens": 512}}, ".")
    )


@pytest.fixture(scope="session")
def tiny_llm():
    """The tiny Llama with spread logits (initializer_range 0.5): greedy tokens vary from step to step,
    a stronger check that two decode paths agree than a model that repeats one token."""
    return build_tiny_llm(0.5)


@pytest.fixture(scope="session")
def looping_llm():
    """The tiny Llama with narrow logits (initializer_range 0.08): greedy decoding falls into a loop of a few tokens,
    like the degenerate SmolLM2 answers the loop breakers exist for. (transformers' default 0.02 repeats one token so
    strongly over the 1024-token vocabulary that a repetition penalty of 1.5 cannot move it.)"""
    return build_tiny_llm(0.08)


@pytest.fixture(scope="session")
def tiny_generator(tiny_llm):
    """Eager Generator over the tiny random Llama (the tiny tokenizer, SmolLM2's chat format)."""
    from ragserve.llm.generation import Generator

    return Generator(tiny_llm_config(), model=tiny_llm)


@pytest.fixture(scope="session")
def tiny_compiled_generator(tiny_llm):
    """Compiled Generator over the same tiny Llama: batch buckets 1, 2 x cache buckets 128, 256, warmed.

    compile_cache_dir None leaves Inductor's own cache (as tests/test_embeddings.py does): no process-wide
    TORCHINDUCTOR_CACHE_DIR change, and a second run reuses the kernels (about 150 s cold on 2 busy cores).
    """
    from ragserve.llm.generation import Generator

    changes = {"compile.enabled": True, "compile.cache_dir": None, "decode.batch_buckets": [1, 2]}
    cfg = tiny_llm_config({**changes, "decode.cache_buckets": [128, 256]})
    return Generator(cfg, model=tiny_llm)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llm) -> Path:
    """The tiny Llama saved as a Hugging Face folder with its tokenizer, for handlers that load from model_path."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llm.save_pretrained(folder)
    AutoTokenizer.from_pretrained(TINY_LLAMA_TOKENIZER).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_inflight():
    """In-flight decode (4 requests) over its own copy of the tiny Llama: the manager switches its attention to a
    paged one and runs a decode thread, so it shares no model with the batch-path fixtures."""
    from ragserve.llm.generation import Generator
    from ragserve.llm.inflight import InFlight

    decode = InFlight(Generator(tiny_llm_config(), model=build_tiny_llm(0.5)), max_requests=4)
    yield decode
    decode.stop()


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer MPNet cross-encoder (one relevance logit) with the tiny MPNet tokenizer, saved as a
    folder: no reranker weights can be downloaded here, so it tests the stage's plumbing, not quality."""
    import torch
    from transformers import AutoTokenizer, MPNetConfig, MPNetForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(TINY_MPNET_TOKENIZER)
    config = MPNetConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=1, initializer_range=0.5,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    MPNetForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
