"""The encoder's compile and ONNX Runtime paths on a tiny random MPNet (1 layer, hidden 32) built here:
the same code as the real model's, in seconds instead of minutes, so they run on every `make test`.
The tokenizer is the committed tiny WordPiece with MPNet's special tokens (tests/fixtures); nothing is downloaded."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from ragserve.compilation import compiled_graph_count
from ragserve.config import CompileConfig, EmbeddingConfig
from ragserve.embedding.encoder import Encoder
from ragserve_ops.testing import build_tiny_mpnet

TEXTS = ["What's new with Llama 3.1?", "FAISS", "batchSize and maxBatchDelay " * 60, "one more", "a b c d e f"]


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory: pytest.TempPathFactory) -> EmbeddingConfig:
    folder = build_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet"))
    return EmbeddingConfig(model_path=str(folder), batch_size=4)


@pytest.fixture(scope="module")
def eager(tiny_cfg: EmbeddingConfig) -> np.ndarray:
    return Encoder(tiny_cfg, CompileConfig(enabled=False)).embed(TEXTS)


def test_tiny_compiled_encoder_equals_eager_and_never_recompiles_after_warm_up(tiny_cfg, eager) -> None:
    compiled = Encoder(tiny_cfg, CompileConfig(cache_dir=None))
    graphs_after_warm_up = compiled_graph_count()
    np.testing.assert_allclose(compiled.embed(TEXTS), eager, atol=1e-5)
    for batch in (["one"], ["two words"] * 3, ["x " * 200] * 7, TEXTS[2:3], TEXTS):
        compiled.embed(batch)
    assert compiled_graph_count() == graphs_after_warm_up


def test_tiny_onnxruntime_encoder_equals_eager(tiny_cfg, eager) -> None:
    import dataclasses

    from ragserve.embedding.onnxrt import onnx_file

    cfg = dataclasses.replace(tiny_cfg, backend="onnxruntime")
    encoder = Encoder(cfg, CompileConfig())  # exports the module into the model folder first
    assert onnx_file(cfg).is_file()
    np.testing.assert_allclose(encoder.embed(TEXTS), eager, atol=1e-5)


def test_count_tokens_cut_is_what_the_model_reads_and_uncut_is_the_whole_text(tiny_cfg) -> None:
    encoder = Encoder(tiny_cfg, CompileConfig(enabled=False))
    long = "word " * (2 * tiny_cfg.max_seq_length)
    assert encoder.count_tokens([long, "a b"]) == [tiny_cfg.max_seq_length, 4]
    assert encoder.count_tokens([long], truncate=False)[0] > tiny_cfg.max_seq_length


def test_token_budget_batches_hold_every_text_once_longest_first_and_embed_the_same(tiny_cfg, eager) -> None:
    """embedding.batch_tokens (GPU builds): batches sized in padded tokens, not in texts."""
    import dataclasses

    encoder = Encoder(dataclasses.replace(tiny_cfg, batch_tokens=64), CompileConfig(enabled=False))
    texts = TEXTS * 7  # 35 texts of 1 to ~400 tokens
    tokens = encoder.count_tokens(texts)
    batches = encoder.batches(texts)
    assert sorted(i for batch in batches for i in batch) == list(range(len(texts)))
    for batch in batches:
        padded = len(batch) * max(tokens[i] for i in batch)
        assert padded <= 64 or len(batch) == 1  # a text longer than the budget goes alone
        assert tokens[batch[0]] == max(tokens[i] for i in batch)
    assert len(batches) < len(texts) and max(len(b) for b in batches) > encoder.cfg.batch_size  # short ones pack
    np.testing.assert_allclose(encoder.embed(TEXTS), eager, atol=1e-5)


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_precision_vectors_stay_within_cosine_0_999_of_float32(tiny_cfg, eager, dtype: str) -> None:
    """embedding.dtype (float16 on a GPU by default): the same code path on CPU; vectors stay float32 on disk."""
    import dataclasses

    half = Encoder(dataclasses.replace(tiny_cfg, dtype=dtype), CompileConfig(enabled=False)).embed(TEXTS)
    assert half.dtype == np.float32
    cosines = np.sum(half * eager, axis=1) / np.linalg.norm(half, axis=1) / np.linalg.norm(eager, axis=1)
    assert cosines.min() >= 0.999, cosines


def test_tiny_int8_encoder_is_its_own_file_and_identity_and_stays_near_float32(tiny_cfg, eager) -> None:
    """embedding.precision int8 (embedding/int8.py): smoothed, outliers split off, ONNX Runtime's dynamic int8."""
    import dataclasses

    import onnx

    from ragserve.embedding.cache import cache_key, model_identity
    from ragserve.embedding.int8 import INT8_IDENTITY, INT8_RECIPE
    from ragserve.embedding.onnxrt import onnx_file

    fp32 = dataclasses.replace(tiny_cfg, backend="onnxruntime")
    int8 = dataclasses.replace(fp32, precision="int8")
    encoder = Encoder(int8, CompileConfig())
    path = onnx_file(int8)
    assert path.is_file() and INT8_RECIPE in path.name and path != onnx_file(fp32)
    assert model_identity(int8)["precision"] == INT8_IDENTITY and "precision" not in model_identity(fp32)
    assert cache_key(int8) != cache_key(fp32)
    ops = [node.op_type for node in onnx.load(str(path)).graph.node]
    assert ops.count("MatMulInteger") == 6  # q, k, v, o, up and the down-projection's non-outlier channels
    assert ops.count("MatMul") >= 1  # the down-projection's outlier channels stay float32
    gathered = {node.input[0] for node in onnx.load(str(path)).graph.node if node.op_type == "Gather"}
    assert all(name.startswith("transformer.") for name in gathered), gathered  # tables only: channels are sliced
    vectors = encoder.embed(TEXTS)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    cosine = (vectors * eager).sum(axis=1)
    assert cosine.min() > 0.98, cosine


def test_tiny_int8_vectors_of_long_texts_do_not_depend_on_their_batch(tiny_cfg) -> None:
    """int8's activation scale is per tensor: a text batched beside others (and their padding) would get another
    vector. A text of ALONE_MIN_TOKENS tokens or more (a chunk) runs alone, so the same chunk gets one vector in any
    build batch, span vectors (the token path) included; short texts run together, as before."""
    import dataclasses

    from ragserve.embedding.int8 import ALONE_MIN_TOKENS

    int8 = Encoder(dataclasses.replace(tiny_cfg, backend="onnxruntime", precision="int8"), CompileConfig())
    chunk = "A long chunk with LARGE values 123456789 and code: def f(x): return x ** 2. " * 10
    other = "Another long chunk, about batching, padding and quantization scales in ONNX Runtime. " * 12
    assert min(int8.count_tokens([chunk, other])) >= ALONE_MIN_TOKENS
    alone = int8.embed([chunk])[0]
    batched = int8.embed([other, chunk, "a short question?", "short"])
    np.testing.assert_allclose(batched[1], alone, atol=1e-6)
    np.testing.assert_allclose(batched[2], int8.embed(["a short question?", "short"])[0], atol=1e-6)  # together
    spans = [(0, 40), (41, 200)]
    whole, parts = int8.embed_spans([other, chunk], [[(0, 10)], spans])
    whole_alone, parts_alone = int8.embed_spans([chunk], [spans])
    np.testing.assert_allclose(whole[1], alone, atol=1e-5)  # mean of the token rows, pooled outside the graph
    np.testing.assert_allclose(whole[1], whole_alone[0], atol=1e-6)
    np.testing.assert_allclose(parts[1], parts_alone[0], atol=1e-6)


def test_a_serving_encoder_without_its_onnx_export_fails_naming_the_command(tmp_path) -> None:
    """Exports are build work (make models, index builds, make archive): a worker's encoder never makes one."""
    import dataclasses

    from ragserve.embedding.onnxrt import onnx_file

    cfg = dataclasses.replace(
        EmbeddingConfig(model_path=str(build_tiny_mpnet(tmp_path / "fresh"))), backend="onnxruntime"
    )
    with pytest.raises(FileNotFoundError, match=r"make models.*scripts/export_onnx\.py"):
        Encoder(cfg, CompileConfig(), export_missing=False)
    assert not onnx_file(cfg).exists()
    Encoder(cfg, CompileConfig())  # a build exports it
    assert onnx_file(cfg).is_file()
    assert Encoder(cfg, CompileConfig(), export_missing=False).embed(["FAISS"]).shape == (1, 32)


def test_tiny_torch_int8_is_its_own_identity_batch_invariant_and_compiles_to_the_same_vectors(tiny_cfg, eager) -> None:
    """precision int8 on the torch backend (aarch64's default): torchao's int8 with per-token activation scales
    over the same smoothed, outlier-split model, eager and under torch.compile."""
    import dataclasses

    from ragserve.embedding.cache import model_identity
    from ragserve.embedding.int8 import INT8_IDENTITY, TORCH_INT8_IDENTITY

    int8_cfg = dataclasses.replace(tiny_cfg, precision="int8")
    assert model_identity(int8_cfg)["precision"] == TORCH_INT8_IDENTITY != INT8_IDENTITY
    encoder = Encoder(int8_cfg, CompileConfig(enabled=False))
    linears = [m for m in encoder.backend.model.modules() if isinstance(m, torch.nn.Linear)]
    assert any(type(m.weight).__name__ != "Parameter" for m in linears)  # torchao's int8 weight tensors
    vectors = encoder.embed(TEXTS)
    assert ((vectors * eager).sum(axis=1)).min() > 0.98
    assert not np.allclose(vectors, eager, atol=1e-6)  # int8 did run
    # Per-token scales: a row's output is the same whatever the other rows hold (a per-tensor scale would take
    # the loud rows' range and crush the first row's int8 values). Checked on one quantized Linear, exactly.
    linear = next(m for m in linears if type(m.weight).__name__ != "Parameter")
    quiet = torch.randn(4, linear.in_features, generator=torch.Generator().manual_seed(0))
    loud = torch.cat([quiet[:1], quiet[1:] * 100])
    with torch.inference_mode():
        assert torch.equal(linear(quiet)[0], linear(loud)[0])
    compiled = Encoder(int8_cfg, CompileConfig(cache_dir=None))
    np.testing.assert_allclose(compiled.embed(TEXTS), vectors, atol=2e-3)
