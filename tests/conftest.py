"""Shared fixtures: the real embedding model, small local corpora and a loopback web server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from ragserve.config import CompileConfig, EmbeddingConfig
from ragserve.testing import FIXTURES, HF_SITE, LLM_DIR, MODEL_DIR, build_tiny_llm, serve_directory, tiny_llm_config


@pytest.fixture(scope="session")
def site_url() -> Iterator[str]:
    """The small multi-page test site in tests/fixtures/site."""
    server, url = serve_directory(FIXTURES / "site")
    yield url
    server.shutdown()


@pytest.fixture(scope="session")
def hf_site_url() -> Iterator[str]:
    """The shared offline mirror of the Hugging Face blog (skipped when ../shared is absent)."""
    if not HF_SITE.is_dir():
        pytest.skip(f"{HF_SITE} is absent: the shared corpus is needed for the realistic crawl")
    server, url = serve_directory(HF_SITE)
    yield url
    server.shutdown()


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
def tiny_llm(llm_dir: Path):
    """The tiny Llama with spread logits (initializer_range 0.5): greedy tokens vary from step to step,
    a stronger check that two decode paths agree than a model that repeats one token."""
    return build_tiny_llm(llm_dir, 0.5)


@pytest.fixture(scope="session")
def looping_llm(llm_dir: Path):
    """The tiny Llama with transformers' default init (0.02): greedy decoding repeats itself, like the
    degenerate SmolLM2 answers the loop breakers exist for."""
    return build_tiny_llm(llm_dir, 0.02)


@pytest.fixture(scope="session")
def tiny_generator(llm_dir: Path, tiny_llm):
    """Eager Generator over the tiny random Llama (SmolLM2's tokenizer and chat template)."""
    from ragserve.llm.generation import Generator

    return Generator(tiny_llm_config(llm_dir), model=tiny_llm)


@pytest.fixture(scope="session")
def tiny_compiled_generator(llm_dir: Path, tiny_llm):
    """Compiled Generator over the same tiny Llama: batch buckets 1, 2 x cache buckets 128, 256, warmed.

    compile_cache_dir None leaves Inductor's own cache (as tests/test_embeddings.py does): no process-wide
    TORCHINDUCTOR_CACHE_DIR change, and a second run reuses the kernels (about 150 s cold on 2 busy cores).
    """
    from ragserve.llm.generation import Generator

    changes = {"compile.enabled": True, "compile.cache_dir": None, "decode.batch_buckets": [1, 2]}
    cfg = tiny_llm_config(llm_dir, {**changes, "decode.cache_buckets": [128, 256]})
    return Generator(cfg, model=tiny_llm)


@pytest.fixture(scope="session")
def tiny_llm_dir(tmp_path_factory: pytest.TempPathFactory, tiny_llm, llm_dir: Path) -> Path:
    """The tiny Llama saved as a Hugging Face folder (12 MB), for handlers that load from model_path."""
    from transformers import AutoTokenizer

    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_llm.save_pretrained(folder)
    AutoTokenizer.from_pretrained(llm_dir).save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_inflight(llm_dir: Path):
    """In-flight decode (4 requests) over its own copy of the tiny Llama: the manager switches its attention to a
    paged one and runs a decode thread, so it shares no model with the batch-path fixtures."""
    from ragserve.llm.generation import Generator
    from ragserve.llm.inflight import InFlight

    decode = InFlight(Generator(tiny_llm_config(llm_dir), model=build_tiny_llm(llm_dir, 0.5)), max_requests=4)
    yield decode
    decode.stop()


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory: pytest.TempPathFactory, model_dir: Path) -> Path:
    """A random 1-layer MPNet cross-encoder (one relevance logit) with all-mpnet-base-v2's tokenizer, saved
    as a folder: no reranker weights can be downloaded here, so it tests the stage's plumbing, not quality."""
    import torch
    from transformers import AutoTokenizer, MPNetConfig, MPNetForSequenceClassification

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    config = MPNetConfig(
        vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, num_labels=1, initializer_range=0.5,
    )  # fmt: skip
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("tiny-cross-encoder")
    MPNetForSequenceClassification(config).eval().save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return folder
