"""Which FAISS index a version holds: exact (flat) up to a size, approximate (HNSW or IVF) past it.

Public names: ANN_KINDS, resolve_kind, ann_identity, build_faiss_index, kind_of, search_params,
EXACT_FILTERED_MAX.
`index.kind: auto` is flat below `index.ann_min_chunks` and IVF above. Measured one query at a time on
one thread of a 2-core x86 VM (benchmarks/ann_bench.py, docs/results/ann.md): a flat scan took 25 ms at
100k vectors and 224 ms at 1M; IVF (4,000 lists, 32 probed) 3.4 ms at 1M with recall@10 1.000 against
it; HNSW (M 32, efConstruction 80) 0.8-2.8 ms but its recall stopped at 0.97 however wide the search.
All kinds are saved in index.faiss, keep every vector (reconstruct works: page, window and re-ranking
scores read them) and take FAISS's IDSelector for metadata filters. Build settings (M, efConstruction,
lists) change the saved index and are part of the line's identity; search settings (efSearch, probes)
are read per query.
"""

from __future__ import annotations

import math
from typing import Any

import faiss
import numpy as np

from ragserve.config import IndexConfig

ANN_KINDS = ("flat", "hnsw", "ivf")
EXACT_FILTERED_MAX = 20_000  # a filter allowing at most this many chunks is scored exactly: cheap, and a graph
# or cluster walk restricted to few allowed ids can miss them


def resolve_kind(cfg: IndexConfig, count: int) -> str:
    """The kind an index of count chunks gets."""
    if cfg.kind != "auto":
        return cfg.kind
    return "flat" if count < cfg.ann_min_chunks else "ivf"


def ann_identity(cfg: IndexConfig) -> dict[str, Any] | None:
    """The build settings that change index.faiss (None for the default flat index, so its lines keep their key)."""
    if cfg.kind == "flat":
        return None
    return {
        "kind": cfg.kind,
        "ann_min_chunks": cfg.ann_min_chunks if cfg.kind == "auto" else None,
        "hnsw": [cfg.hnsw_m, cfg.hnsw_ef_construction] if cfg.kind == "hnsw" else None,
        "ivf_lists": cfg.ivf_lists if cfg.kind in ("ivf", "auto") else None,
    }


def build_faiss_index(vectors: np.ndarray, metric: str, cfg: IndexConfig) -> faiss.Index:
    """A FAISS index of these (n, dim) float32 vectors, positions 0..n-1, of the kind cfg resolves to."""
    n, dim = vectors.shape
    faiss_metric = faiss.METRIC_INNER_PRODUCT if metric == "cosine" else faiss.METRIC_L2
    kind = resolve_kind(cfg, n)
    if kind == "hnsw":
        faiss_index = faiss.IndexHNSWFlat(dim, cfg.hnsw_m, faiss_metric)
        faiss_index.hnsw.efConstruction = cfg.hnsw_ef_construction
    elif kind == "ivf":
        lists = cfg.ivf_lists or max(1, min(n // 39, int(4 * math.sqrt(n))))  # FAISS wants >= 39 points per list
        quantizer = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
        faiss_index = faiss.IndexIVFFlat(quantizer, dim, lists, faiss_metric)
        sample = vectors[np.random.default_rng(0).permutation(n)[: 256 * lists]]  # k-means on a sample
        faiss_index.train(sample)
    else:
        faiss_index = faiss.IndexFlatIP(dim) if metric == "cosine" else faiss.IndexFlatL2(dim)
    faiss_index.add(vectors)
    if kind == "ivf":
        faiss_index.make_direct_map()  # reconstruct by position
    return faiss_index


def kind_of(faiss_index: faiss.Index) -> str:
    if isinstance(faiss_index, faiss.IndexHNSW):
        return "hnsw"
    return "ivf" if isinstance(faiss_index, faiss.IndexIVF) else "flat"


def search_params(faiss_index: faiss.Index, cfg: IndexConfig, selector: Any = None) -> Any:
    """FAISS SearchParameters for one search: the kind's search-time settings and an optional IDSelector."""
    kind = kind_of(faiss_index)
    if kind == "hnsw":
        return faiss.SearchParametersHNSW(efSearch=cfg.hnsw_ef_search, sel=selector)
    if kind == "ivf":
        return faiss.SearchParametersIVF(nprobe=cfg.ivf_probe, sel=selector)
    return faiss.SearchParameters(sel=selector) if selector is not None else None
