"""The index store, read side: an immutable index version loaded for search, and the live one of a line.

Public names: IndexVersion, IndexStoreError, load_current, set_search_threads.
The folder layout of a line and what identifies it: line.py (builder.py writes versions; workers only read them).
Loading takes no lock and writes nothing; the vectors are memory-mapped read-only (index.mmap), so the
workers of a node share their pages. A folder whose checksums or identity do not match is never loaded.
We deliberately skip LangChain's `FAISS.save_local`/`load_local`: its docstore is a pickle, and loading
a pickle runs code. Scores: cosine similarity (inner product of unit vectors) or squared L2 distance.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import faiss
import numpy as np
from langchain_community.docstore.in_memory import InMemoryDocstore
from langchain_community.vectorstores import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from threadpoolctl import threadpool_limits

from ragserve.config import Config, IndexConfig
from ragserve.index.ann import EXACT_FILTERED_MAX, build_faiss_index, kind_of, search_params
from ragserve.index.bm25 import BM25, BM25Scheme
from ragserve.index.line import IndexLine, identity, read_jsonl, scheme_of, windows_of
from ragserve.index.pages import PAGES_FOLDER, Pages, PagesMissing
from ragserve.index.windows import WindowVectors

if TYPE_CHECKING:
    from ragserve.embedding.encoder import Encoder

logger = logging.getLogger(__name__)

# IO_FLAG_MMAP alone maps only on-disk IVF lists; a flat index's vectors need IO_FLAG_MMAP_IFC
# (IndexFlatCodes), checked on faiss 1.15: /proc/<pid>/maps shows index.faiss only with it.
MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


class IndexStoreError(RuntimeError):
    """An index is missing, corrupted or was built for another config; the message says which and what to run."""


class IndexVersion:
    """One version of an index line, loaded for search (or built in memory): a LangChain FAISS store, BM25, the page
    level (records, BM25, vectors) and sentence windows. `index` in code is one of these; a FAISS index is
    `faiss_index` or `store.index`; a version folder is `folder`."""

    def __init__(
        self,
        store: FAISS,
        bm25: BM25,
        pages: Pages | None = None,
        windows: WindowVectors | None = None,
        manifest: dict[str, Any] | None = None,
        cfg: IndexConfig | None = None,
    ) -> None:
        self.store = store
        self.cfg = cfg or IndexConfig()  # search-time settings (efSearch, probes)
        self.bm25 = bm25
        self.pages = pages  # page records, their BM25 and vectors (every saved version has them)
        self.windows = windows  # sentence windows: only when the config uses them
        self.manifest = manifest or {}  # of the version loaded; {} for an index built in memory

    def __len__(self) -> int:
        return self.store.index.ntotal

    @property
    def version(self) -> str | None:
        return self.manifest.get("version")

    @classmethod
    def from_vectors(
        cls,
        chunks: list[Document],
        vectors: np.ndarray,
        metric: str,
        scheme: BM25Scheme,
        embeddings: Any = None,
        cfg: IndexConfig | None = None,
    ) -> IndexVersion:
        """An in-memory index of chunks whose vectors are given (builder.py embeds them); cfg: its kind (ann.py)."""
        texts = [chunk.page_content for chunk in chunks]
        cfg = cfg or IndexConfig(kind="flat")
        faiss_index = build_faiss_index(_as_float32(vectors), metric, cfg)
        ids = [str(i) for i in range(len(chunks))]  # positions, not random uuids: reproducible
        documents = [
            Document(text, metadata=chunk.metadata, id=i) for i, text, chunk in zip(ids, texts, chunks, strict=True)
        ]
        bm25 = BM25.build(texts, [scheme.header(chunk.metadata) for chunk in chunks], scheme)
        return cls(_faiss_store(faiss_index, documents, metric, embeddings), bm25, cfg=cfg)

    @property
    def metric(self) -> str:
        return "cosine" if self.store.distance_strategy == DistanceStrategy.MAX_INNER_PRODUCT else "l2"

    def dense_search(
        self, vectors: np.ndarray, k: int, allowed: np.ndarray | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's (scores, positions), each (n, k), for all (n, dim) query vectors at once; -1 pads.

        allowed: the only positions that may be returned (FAISS's IDSelectorBatch), None for all. An approximate
        index scores a small allowed set exactly instead (ann.EXACT_FILTERED_MAX); past it, a query whose probed
        lists or graph walk met fewer than k allowed chunks (though that many are allowed) is searched again
        exactly over them (IVF: every list probed; HNSW: the allowed vectors scored), so a filter gives k whenever
        k chunks match (retrieval/filters.py)."""
        faiss_index, queries = self.store.index, _as_float32(vectors)
        if allowed is None:
            return faiss_index.search(queries, k, params=search_params(faiss_index, self.cfg))
        allowed = allowed.astype(np.int64)
        kind = kind_of(faiss_index)
        if kind != "flat" and len(allowed) <= EXACT_FILTERED_MAX:
            return self._exact_search(queries, k, allowed)
        selector = faiss.IDSelectorBatch(allowed)
        scores, positions = faiss_index.search(queries, k, params=search_params(faiss_index, self.cfg, selector))
        short = np.flatnonzero((positions >= 0).sum(axis=1) < min(k, len(allowed)))
        if kind == "flat" or not len(short):
            return scores, positions
        if kind == "ivf":  # every list probed: exact over the allowed ids, read from the lists, nothing copied
            params = faiss.SearchParametersIVF(nprobe=faiss_index.nlist, sel=selector)
            scores[short], positions[short] = faiss_index.search(queries[short], k, params=params)
        else:
            scores[short], positions[short] = self._exact_search(queries[short], k, allowed)
        return scores, positions

    def _exact_search(self, vectors: np.ndarray, k: int, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, positions), each (n, k), over the allowed positions only, as a flat index would give them."""
        scores = self._scores_against(vectors, allowed) if len(allowed) else None
        out_scores = np.full((len(vectors), k), -np.inf if self.metric == "cosine" else np.inf, np.float32)
        out_positions = np.full((len(vectors), k), -1, np.int64)
        if scores is not None:
            order = np.argsort(-scores if self.metric == "cosine" else scores, axis=1, kind="stable")[:, :k]  # (n, k')
            out_scores[:, : order.shape[1]] = np.take_along_axis(scores, order, axis=1)
            out_positions[:, : order.shape[1]] = allowed[order]
        return out_scores, out_positions

    def dense_score(self, vector: np.ndarray, position: int) -> float:
        """What FAISS would have scored this chunk: cosine, or squared L2 distance."""
        return float(self.dense_scores(vector, [position])[0])

    def dense_scores(self, vector: np.ndarray, positions: list[int]) -> np.ndarray:
        """(len(positions),) what FAISS would have scored these chunks, in one call (not one per chunk)."""
        if not positions:
            return np.empty(0, np.float32)
        stored = self.store.index.reconstruct_batch(np.asarray(positions, dtype=np.int64))  # (n, dim)
        if self.store.distance_strategy == DistanceStrategy.MAX_INNER_PRODUCT:
            return stored @ vector
        return np.sum((stored - vector) ** 2, axis=1)

    def _scores_against(self, queries: np.ndarray, positions: np.ndarray) -> np.ndarray:
        """(n, len(positions)) what FAISS would score each query against these chunks: one reconstruct."""
        stored = self.store.index.reconstruct_batch(positions)  # (m, dim)
        if self.metric == "cosine":
            return queries @ stored.T
        return np.sum((queries[:, None, :] - stored[None, :, :]) ** 2, axis=2)

    def vectors(self) -> np.ndarray:
        """(n, dim) every chunk's vector, in position order."""
        return self.store.index.reconstruct_n(0, len(self))

    def document(self, position: int) -> Document:
        return self.store.docstore.search(self.store.index_to_docstore_id[position])

    def documents(self) -> list[Document]:
        return [self.document(i) for i in range(len(self))]

    @classmethod
    def load(cls, folder: Path, cfg: Config, embeddings: Any = None, mmap: bool | None = None) -> IndexVersion:
        """Load a version folder after checking that it was built for cfg (identity()) and is intact.

        mmap: map the vectors read-only (default: cfg.index.mmap). embeddings: LangChain's embedding function
        for the store's own similarity_search (the Encoder); retrieval here passes vectors, never needs it."""
        expected = identity(cfg)
        mmap = cfg.index.mmap if mmap is None else mmap
        manifest = read_manifest(folder)
        if manifest.get("identity") != expected:
            differ = sorted(k for k in expected if manifest.get("identity", {}).get(k) != expected[k])
            raise IndexStoreError(f"{folder} was built for another config (differs in: {', '.join(differ) or 'all'})")
        for name, digest in manifest["sha256"].items():
            if sha256_file(folder / name) != digest:
                raise IndexStoreError(f"{folder / name} is corrupted (sha256 mismatch)")
        faiss_index = faiss.read_index(str(folder / "index.faiss"), MMAP_FLAGS if mmap else 0)
        documents = [
            Document(row["text"], metadata=row["metadata"], id=str(i))
            for i, row in enumerate(read_jsonl(folder / "chunks.jsonl"))
        ]
        if faiss_index.ntotal != len(documents):
            raise IndexStoreError(f"{folder}: {faiss_index.ntotal} vectors but {len(documents)} chunks")
        scheme, windows = scheme_of(cfg), windows_of(cfg)
        if windows and not any(name.startswith(f"{windows}/") for name in manifest["sha256"]):
            windows = None  # built without them: more chunks than index.window_max_chunks (builder.builds_windows)
        try:
            pages = Pages.load(folder / PAGES_FOLDER, documents, scheme)
        except PagesMissing as err:
            raise IndexStoreError(f"{err}: build the version again (make refresh, scripts/build_index.py)") from err
        return cls(
            _faiss_store(faiss_index, documents, manifest["metric"], embeddings),
            BM25.load(folder / scheme.folder, scheme),
            pages,
            WindowVectors.load(folder / windows, mmap) if windows else None,
            manifest,
            cfg.index,
        )


def load_current(cfg: Config, embeddings: Encoder | None = None) -> IndexVersion:
    """The live version of cfg's line; IndexStoreError naming the command to run when there is none."""
    line = IndexLine.of(cfg)
    version = line.current()
    if version is None:
        raise IndexStoreError(
            f"no index for this config at {line.root} (source {cfg.corpus.source}): build it ahead of serving "
            "with `make index` (scripts/build_index.py --config <yaml>); workers never build"
        )
    return IndexVersion.load(line.folder(version), cfg, embeddings)


def set_search_threads(threads: int) -> None:
    """Threads for the search side of a query: FAISS's OpenMP pool and numpy's BLAS (0: their defaults).

    A search is a few milliseconds of small matrix products, and both pools spin-wait after their
    work on the cores the encoder (torch or ONNX Runtime) needs next. Measured on the docs index,
    ONNX Runtime, a batch of 8 questions: FAISS with 2 threads searched in 12.3 ms, with 1 in 5.0;
    OpenBLAS's 2 threads after the sentence-window product slowed the next embedding from 65 to 121 ms.
    """
    if threads > 0:
        faiss.omp_set_num_threads(threads)
        threadpool_limits(threads, user_api="blas")


def read_manifest(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise IndexStoreError(f"{folder}: no readable manifest.json ({err})") from err


def sha256_file(path: Path) -> str:
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return digest.hexdigest()
    except OSError as err:
        raise IndexStoreError(f"{path}: {err}") from err


def _faiss_store(faiss_index: faiss.Index, documents: list[Document], metric: str, embeddings: Any) -> FAISS:
    ids = [document.id for document in documents]
    strategy = DistanceStrategy.MAX_INNER_PRODUCT if metric == "cosine" else DistanceStrategy.EUCLIDEAN_DISTANCE
    return FAISS(
        embeddings,
        faiss_index,
        InMemoryDocstore(dict(zip(ids, documents, strict=True))),
        dict(enumerate(ids)),
        distance_strategy=strategy,
    )


def _as_float32(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32)
