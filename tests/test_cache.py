"""cache.py: texts the cache lacks are embedded in parts, each stored before the next; with a progress bar."""

from __future__ import annotations

import io
import logging
import sys

import numpy as np
import pytest

from ragserve.embedding import cache as cache_module
from ragserve.embedding.cache import EmbeddingCache

PART = 4  # STORE_EVERY in these tests


class FakeEncoder:
    """embed: one unit vector per text, from its length; stops (RuntimeError) at call number stop_at."""

    dimension = 3

    def __init__(self, stop_at: int | None = None) -> None:
        self.calls: list[int] = []
        self.stop_at = stop_at

    def embed(self, texts: list[str]) -> np.ndarray:
        if len(self.calls) == self.stop_at:
            raise RuntimeError("stopped")
        self.calls.append(len(texts))
        return np.array([[1.0, len(t), 0.0] for t in texts], np.float32) / np.hypot(1.0, [[len(t)] for t in texts])


class BatchingEncoder(FakeEncoder):
    """Says its batches (Encoder.batches) of 2 texts, and embeds spans (Encoder.embed_spans)."""

    def batches(self, texts: list[str]) -> list[list[int]]:
        return [list(range(start, min(start + 2, len(texts)))) for start in range(0, len(texts), 2)]

    def embed_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]) -> tuple[np.ndarray, list]:
        vectors = self.embed(texts)
        return vectors, [np.repeat(vector[None], len(s), axis=0) for vector, s in zip(vectors, spans, strict=True)]


TEXTS = [f"text number {i}" + "x" * i for i in range(10)]


@pytest.fixture(autouse=True)
def small_parts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(cache_module, "STORE_EVERY", PART)
    monkeypatch.setattr(sys, "stderr", io.StringIO())  # no terminal: the bar logs


def test_a_stop_after_the_first_part_keeps_that_part_stored(tmp_path) -> None:
    encoder = FakeEncoder(stop_at=1)
    cache = EmbeddingCache(tmp_path / "c.sqlite", lambda: encoder)
    with pytest.raises(RuntimeError, match="stopped"):
        cache.embed(TEXTS)
    assert encoder.calls == [PART]  # an encoder without batches(): one call per part
    cache.close()
    again = EmbeddingCache(tmp_path / "c.sqlite", lambda: FakeEncoder())
    assert len(again) == PART
    resumed = again.embed(TEXTS)  # only the texts after the first part reach the encoder now
    assert again.encoder.calls == [PART, len(TEXTS) - 2 * PART] and again.embedded == len(TEXTS) - PART
    np.testing.assert_allclose(resumed, FakeEncoder().embed(TEXTS), rtol=1e-6)


def test_parts_go_batch_by_batch_under_a_bar_that_logs_without_a_terminal(tmp_path, caplog) -> None:
    caplog.set_level(logging.INFO, logger="ragserve.embedding.progress")
    encoder = BatchingEncoder()
    cache = EmbeddingCache(tmp_path / "c.sqlite", lambda: encoder)
    vectors = cache.embed(TEXTS)
    np.testing.assert_allclose(vectors, FakeEncoder().embed(TEXTS), rtol=1e-6)
    assert encoder.calls == [2, 2, 2, 2, 2]  # parts of 4, 4, 2 in the encoder's batches of 2
    lines = [r.getMessage() for r in caplog.records if r.name == "ragserve.embedding.progress"]
    assert lines[0].startswith("embedding new texts: 0/10") and lines[-1].startswith("embedding new texts: 10/10")
    cache.embed(TEXTS)  # all cached: no encoder call, no bar
    assert encoder.calls == [2, 2, 2, 2, 2] and len(caplog.records) == len(lines)


def test_span_parts_are_stored_as_they_go_too(tmp_path) -> None:
    spans = [[(0, 4), (5, 11)] for _ in TEXTS]
    encoder = BatchingEncoder(stop_at=2)  # the second part's first batch
    cache = EmbeddingCache(tmp_path / "c.sqlite", lambda: encoder)
    with pytest.raises(RuntimeError, match="stopped"):
        cache.embed_spans(TEXTS, spans)
    assert len(cache) == PART * 3  # each text of the first part and its 2 spans
    cache.close()
    again = EmbeddingCache(tmp_path / "c.sqlite", lambda: BatchingEncoder())
    whole, per_text = again.embed_spans(TEXTS, spans)
    assert again.embedded == len(TEXTS) - PART and len(again) == len(TEXTS) * 3
    np.testing.assert_allclose(whole, FakeEncoder().embed(TEXTS), rtol=1e-6)
    assert all(p.shape == (2, 3) for p in per_text)
