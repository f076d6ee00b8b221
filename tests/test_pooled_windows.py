"""Pooled sentence windows (index.window_mode: pooled): a window's vector is the mean of its chunk's own token
embeddings over the window's characters, from the one forward pass that embeds the chunk (late chunking).
Checked on the tiny random MPNet (no download): the text vectors equal Encoder.embed's, a span's vector is the
mean of exactly its tokens, ONNX Runtime agrees with torch, the cache pays one pass per chunk, and a build
writes and reads them like encoded windows."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
import torch
from langchain_core.documents import Document
from transformers import AutoModel

from ragserve.config import CompileConfig, Config, ConfigError, EmbeddingConfig, override
from ragserve.embedding.cache import EmbeddingCache
from ragserve.embedding.encoder import Encoder
from ragserve.index.builder import build_in_memory
from ragserve.index.line import windows_of
from ragserve.index.windows import sentence_window_spans, sentence_windows
from ragserve_ops.testing import build_tiny_mpnet

TEXT = "Llama 3.1 was released in July.  It has a 128k context!\nThe 405B model is open. Weights are on the Hub."


@pytest.fixture(scope="module")
def tiny_cfg(tmp_path_factory: pytest.TempPathFactory) -> EmbeddingConfig:
    return EmbeddingConfig(model_path=str(build_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet"))), batch_size=4)


@pytest.fixture(scope="module")
def encoder(tiny_cfg: EmbeddingConfig) -> Encoder:
    return Encoder(tiny_cfg, CompileConfig(enabled=False))


@pytest.mark.parametrize(
    "text", [TEXT, "One. Two! Three?\n# Four\nFive. Six.", "no break at all", "  \n", "A.\n\nB. C"]
)
@pytest.mark.parametrize(("size", "stride"), [(3, 2), (3, 3), (1, 1), (4, 2)])
def test_spans_cut_the_same_windows_as_the_window_texts(text: str, size: int, stride: int) -> None:
    spans = sentence_window_spans(text, size, stride)
    rejoined = [re.sub(r"\s+", " ", text[a:b]) for a, b in spans]
    assert rejoined == [re.sub(r"\s+", " ", w) for w in sentence_windows(text, size, stride)]
    assert all(text[a:b] == text[a:b].strip() for a, b in spans)


def test_text_vectors_equal_embed_and_a_span_is_the_mean_of_exactly_its_tokens(tiny_cfg, encoder) -> None:
    texts = [TEXT, "A second, shorter text. With two sentences."]
    spans = [sentence_window_spans(t, 1, 1) for t in texts]
    whole, per_text = encoder.embed_spans(texts, spans)
    np.testing.assert_allclose(whole, encoder.embed(texts), atol=1e-5)
    assert [len(v) for v in per_text] == [len(s) for s in spans] == [4, 2]

    # The reference: the transformer's hidden states of TEXT alone, averaged over the tokens whose characters
    # lie inside each sentence (the tokenizer's offsets), computed here without embed_spans.
    encoded = encoder.tokenizer(TEXT, return_offsets_mapping=True, return_tensors="pt")
    model = AutoModel.from_pretrained(tiny_cfg.model_path).eval()
    with torch.inference_mode():
        hidden = model(input_ids=encoded["input_ids"], attention_mask=encoded["attention_mask"]).last_hidden_state[0]
    offsets = encoded["offset_mapping"][0].tolist()
    for (a, b), vector in zip(spans[0], per_text[0], strict=True):
        rows = [j for j, (s, e) in enumerate(offsets) if e > s and s >= a and e <= b]
        assert rows, "every sentence has tokens"
        mean = hidden[rows].mean(0).numpy()
        np.testing.assert_allclose(vector, mean / np.linalg.norm(mean), atol=1e-5)
    assert float(per_text[0][0] @ per_text[0][2]) < 0.999  # different sentences, different vectors


def test_a_span_past_max_seq_length_is_embedded_on_its_own(tiny_cfg) -> None:
    short = Encoder(dataclasses.replace(tiny_cfg, max_seq_length=16), CompileConfig(enabled=False))
    text = "first words here. " * 10 + "The tail sentence."
    tail = (text.index("The tail"), len(text))
    _, per_text = short.embed_spans([text], [[(0, 5), tail]])
    np.testing.assert_allclose(per_text[0][1], short.embed(["The tail sentence."])[0], atol=1e-5)


def test_onnxruntime_span_vectors_equal_torch(tiny_cfg, encoder) -> None:
    onnx = Encoder(dataclasses.replace(tiny_cfg, backend="onnxruntime"), CompileConfig())
    texts = [TEXT, "x " * 40 + ". And a last sentence."]
    spans = [sentence_window_spans(t, 2, 1) for t in texts]
    torch_whole, torch_parts = encoder.embed_spans(texts, spans)
    onnx_whole, onnx_parts = onnx.embed_spans(texts, spans)
    np.testing.assert_allclose(onnx_whole, torch_whole, atol=1e-5)
    for a, b in zip(onnx_parts, torch_parts, strict=True):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_the_cache_pays_one_pass_per_text_and_keeps_its_vector_too(tmp_path, tiny_cfg) -> None:
    loads = []
    cache = EmbeddingCache(
        tmp_path / "c.sqlite", lambda: loads.append(1) or Encoder(tiny_cfg, CompileConfig(enabled=False))
    )
    texts = [TEXT, "Another chunk. Of two sentences."]
    spans = [sentence_window_spans(t, 3, 2) for t in texts]
    whole, parts = cache.embed_spans(texts, spans)
    assert cache.embedded == 2  # two texts through the encoder, each once, windows included
    again_whole, again_parts = cache.embed_spans(texts, spans)
    assert cache.embedded == 2 and len(loads) == 1
    np.testing.assert_array_equal(again_whole, whole)
    assert all(np.array_equal(a, b) for a, b in zip(again_parts, parts, strict=True))
    np.testing.assert_array_equal(cache.embed(texts), whole)  # the text's own vector came with the pass
    assert cache.embedded == 2
    cache.close()


def test_a_pooled_build_embeds_each_chunk_once_and_saves_its_own_window_folder(tmp_path, tiny_cfg) -> None:
    cfg = Config.from_mapping(
        override({}, {"embedding.model_path": tiny_cfg.model_path, "index.window_mode": "pooled"}), tmp_path
    )
    chunks = [Document(TEXT, metadata={"source": "a", "title": "A"}), Document("Short one.", metadata={"source": "b"})]
    cache = EmbeddingCache(tmp_path / "c.sqlite", lambda: Encoder(tiny_cfg, CompileConfig(enabled=False)))
    index, embedded = build_in_memory(chunks, cache, cfg)
    assert embedded["chunks with pooled windows"] == 2 and embedded["chunks"] == 0
    owners = [len(sentence_window_spans(c.page_content, 3, 3)) for c in chunks]
    assert np.bincount(index.windows.owner).tolist() == owners
    assert windows_of(cfg) == "windows-3-3-pooled"
    assert (
        windows_of(dataclasses.replace(cfg, index=dataclasses.replace(cfg.index, window_mode="encoded")))
        == "windows-3-3"
    )
    cache.close()


def test_pooled_windows_need_mean_pooling_and_a_known_mode() -> None:
    with pytest.raises(ConfigError, match="needs embedding.pooling: mean"):
        Config.from_mapping({"index": {"window_mode": "pooled"}, "embedding": {"pooling": "cls_pooler"}}, ".")
    with pytest.raises(ConfigError, match="window_mode"):
        Config.from_mapping({"index": {"window_mode": "late"}}, ".")
