"""index.kind: exact and approximate FAISS indexes (index/ann.py) on synthetic vectors: no model, no download."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from langchain_core.documents import Document

from ragserve.config import Config, ConfigError, IndexConfig
from ragserve.index.ann import ann_identity, kind_of, resolve_kind
from ragserve.index.bm25 import BM25Scheme
from ragserve.index.line import identity
from ragserve.index.store import IndexVersion


def clustered(n: int, dim: int = 32, seed: int = 0) -> np.ndarray:
    """Unit vectors around 20 topics, like a corpus's embeddings (uniform random ones have no neighbours)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, dim))
    points = centers[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, dim))
    return (points / np.linalg.norm(points, axis=1, keepdims=True)).astype(np.float32)


def index_of(vectors: np.ndarray, **settings) -> IndexVersion:
    chunks = [Document(f"chunk {i}", metadata={"source": f"s{i % 7}"}) for i in range(len(vectors))]
    return IndexVersion.from_vectors(chunks, vectors, "cosine", BM25Scheme(), cfg=IndexConfig(**settings))


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_approximate_kinds_find_what_the_flat_scan_finds(kind: str) -> None:
    vectors, queries = clustered(3000), clustered(50, seed=1)
    flat, ann = index_of(vectors, kind="flat"), index_of(vectors, kind=kind, ivf_probe=16)
    assert (kind_of(flat.store.index), kind_of(ann.store.index)) == ("flat", kind)
    _, exact = flat.dense_search(queries, 10)
    scores, found = ann.dense_search(queries, 10)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(exact, found, strict=True)])
    assert recall >= 0.95, recall
    # Every vector is kept: the page, window and rerank scores read them back by position.
    assert np.allclose(ann.dense_scores(queries[0], list(found[0])), scores[0], atol=1e-5)
    assert np.allclose(ann.vectors(), vectors, atol=1e-6)


@pytest.mark.parametrize("kind", ["hnsw", "ivf"])
def test_a_filter_returns_only_allowed_chunks_ranked_as_the_flat_scan_ranks_them(kind: str) -> None:
    vectors, queries = clustered(2000), clustered(5, seed=2)
    allowed = np.arange(3, 2000, 97)  # 21 chunks: scored exactly
    _, exact = index_of(vectors, kind="flat").dense_search(queries, 10, allowed)
    _, found = index_of(vectors, kind=kind).dense_search(queries, 10, allowed)
    assert set(found.ravel()) <= set(allowed) and (found == exact).all()
    _, few = index_of(vectors, kind=kind).dense_search(queries, 10, allowed[:3])
    assert (few[:, 3:] == -1).all() and set(few[:, :3].ravel()) == set(allowed[:3])  # -1 pads, as FAISS does


def test_auto_is_flat_below_the_threshold_and_ivf_above() -> None:
    cfg = IndexConfig(kind="auto", ann_min_chunks=1000)
    assert (resolve_kind(cfg, 999), resolve_kind(cfg, 1000)) == ("flat", "ivf")
    assert kind_of(index_of(clustered(500), kind="auto", ann_min_chunks=1000).store.index) == "flat"
    assert kind_of(index_of(clustered(1200), kind="auto", ann_min_chunks=1000).store.index) == "ivf"


def test_build_settings_change_the_line_and_search_settings_do_not() -> None:
    base = Config()
    with_index = lambda **s: dataclasses.replace(base, index=dataclasses.replace(base.index, **s))  # noqa: E731
    assert ann_identity(IndexConfig(kind="flat")) is None and "ann" not in identity(with_index(kind="flat"))
    assert identity(with_index(ivf_lists=64)) != identity(base)  # auto's build setting
    assert identity(with_index(kind="hnsw", hnsw_m=16)) != identity(with_index(kind="hnsw"))
    assert identity(with_index(hnsw_ef_search=512)) == identity(base)
    assert identity(with_index(ivf_probe=64)) == identity(base)
    with pytest.raises(ConfigError, match="index.kind"):
        Config.from_mapping({"index": {"kind": "annoy"}}, ".")


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_each_kind_is_saved_and_read_back_memory_mapped(kind: str, tmp_path) -> None:
    import faiss

    from ragserve.index.store import MMAP_FLAGS

    vectors, queries = clustered(1500), clustered(5, seed=3)
    built = index_of(vectors, kind=kind)
    faiss.write_index(built.store.index, str(tmp_path / "index.faiss"))
    read = faiss.read_index(str(tmp_path / "index.faiss"), MMAP_FLAGS)
    assert kind_of(read) == kind and read.ntotal == len(vectors)
    built.store.index = read
    assert (built.dense_search(queries, 5)[1] == index_of(vectors, kind=kind).dense_search(queries, 5)[1]).all()
    assert np.allclose(built.vectors(), vectors, atol=1e-6)


def test_a_wide_filter_the_probed_lists_miss_still_returns_k(monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 33 item 10: a filter allowing more than EXACT_FILTERED_MAX goes through IVF; when the probed lists
    hold fewer than k allowed chunks, the exact scan of the allowed ids tops the hits up (filters.py's promise)."""
    import ragserve.index.store as store

    monkeypatch.setattr(store, "EXACT_FILTERED_MAX", 10)  # the wide branch without a 20,000-chunk index
    vectors, queries = clustered(2000), clustered(5, seed=3)
    ivf = index_of(vectors, kind="ivf", ivf_lists=8, ivf_probe=1)
    _, lists = ivf.store.index.quantizer.search(queries, 1)  # the one list each query probes
    _, assigned = ivf.store.index.quantizer.search(vectors, 1)
    allowed = np.flatnonzero(~np.isin(assigned[:, 0], lists[:, 0]))[:50]  # 50 chunks, none in a probed list
    assert len(allowed) == 50
    _, exact = index_of(vectors, kind="flat").dense_search(queries, 10, allowed)
    _, found = ivf.dense_search(queries, 10, allowed)
    assert (found >= 0).all(), found  # k hits, although the probed lists hold none of them
    assert set(found.ravel()) <= set(allowed) and (found == exact).all()
