"""Embedding contract on the real all-mpnet-base-v2: equal to sentence-transformers, unit rows, order kept."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from ragserve.compilation import compiled_graph_count
from ragserve.config import CompileConfig, EmbeddingConfig
from ragserve.embedding.encoder import Encoder

SENTENCES = [
    "What's new with Llama 3.1?",
    "Llama 3.1 has a context length of 128K tokens.",
    "The quick brown fox jumps over the lazy dog.",
    "TorchServe batches requests with batchSize and maxBatchDelay. " * 30,  # past 384 tokens: truncated
    "FAISS",
]

pytestmark = pytest.mark.model


@pytest.fixture(scope="module")
def reference(model_dir) -> np.ndarray:
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(model_dir), device="cpu")
    return model.encode(SENTENCES, normalize_embeddings=True, convert_to_numpy=True)


def test_embeddings_equal_sentence_transformers(encoder, reference) -> None:
    vectors = encoder.embed(SENTENCES)
    assert vectors.shape == (5, 768) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, reference, atol=1e-5)


def test_onnxruntime_backend_equals_sentence_transformers(embedding_cfg, reference) -> None:
    import dataclasses

    from ragserve.embedding.encoder import Encoder
    from ragserve.embedding.onnxrt import onnx_file

    cfg = dataclasses.replace(embedding_cfg, backend="onnxruntime")
    encoder = Encoder(cfg, CompileConfig(enabled=True))  # compile settings do not apply: nothing is compiled
    assert onnx_file(cfg).is_file() and not hasattr(encoder.backend, "model") and encoder.warm_up_s == 0.0
    vectors = encoder.embed(SENTENCES)
    assert vectors.shape == (5, 768) and vectors.dtype == np.float32
    np.testing.assert_allclose(vectors, reference, atol=1e-5)


def test_rows_have_unit_norm(encoder) -> None:
    np.testing.assert_allclose(np.linalg.norm(encoder.embed(SENTENCES), axis=1), 1.0, atol=1e-5)


def test_embed_is_batch_invariant_and_restores_order(encoder) -> None:
    together = encoder.embed(SENTENCES)  # batch_size 4: sorted by length, two batches
    alone = np.stack([encoder.embed([s])[0] for s in SENTENCES])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    np.testing.assert_allclose(encoder.embed(SENTENCES[::-1]), together[::-1], atol=1e-5)


def test_langchain_interface_returns_lists(encoder) -> None:
    assert len(encoder.embed_query("hello")) == 768
    assert np.asarray(encoder.embed_documents(["a", "b"])).shape == (2, 768)


def test_demo_pooler_output_is_far_from_the_trained_embedding(embedding_cfg, encoder) -> None:
    from ragserve.embedding.encoder import Encoder

    seed = Encoder(
        EmbeddingConfig(model_path=embedding_cfg.model_path, pooling="cls_pooler"), CompileConfig(enabled=False)
    )
    pooled, right = seed.embed(SENTENCES[:2]), encoder.embed(SENTENCES[:2])
    cosine = np.sum(pooled * right, axis=1) / np.linalg.norm(pooled, axis=1)
    assert np.all(np.abs(cosine) < 0.5)


@pytest.mark.compile
def test_compiled_encoder_matches_reference_and_never_recompiles_after_warm_up(embedding_cfg, reference) -> None:
    from ragserve.embedding.encoder import Encoder

    compiled = Encoder(embedding_cfg, CompileConfig(cache_dir=None))
    graphs_after_warm_up = compiled_graph_count()
    assert graphs_after_warm_up >= 2  # batch 1 and batch >= 2
    np.testing.assert_allclose(compiled.embed(SENTENCES), reference, atol=1e-5)
    for batch in (["one"], ["two words"] * 3, ["x " * 200] * 7, [SENTENCES[3]], SENTENCES):
        compiled.embed(batch)
    assert compiled_graph_count() == graphs_after_warm_up


@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_half_precision_build_vectors_match_float32_within_cosine_0_999(embedding_cfg, encoder, dtype: str) -> None:
    """A GPU build embeds in float16 (embedding.dtype auto): the vectors a CPU worker then searches with its
    float32 queries must be the same to cosine 0.999. Checked here through the same code path on CPU."""
    texts = ["What's new with Llama 3.1?", "TorchServe batches requests with batchSize and maxBatchDelay. " * 20]
    half = Encoder(dataclasses.replace(embedding_cfg, dtype=dtype), CompileConfig(enabled=False)).embed(texts)
    full = encoder.embed(texts)
    assert np.min(np.sum(half * full, axis=1)) >= 0.999 and half.dtype == np.float32
