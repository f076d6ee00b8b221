"""The index store: LangChain's FAISS store over the chunk embeddings plus BM25, built once and reused.

Public names: Index, IndexError_, index_key, set_search_threads.
What a question retrieves from it (candidates, fusion, page scores) is retrieval.py's job.
On disk an index is a folder `<index.dir>/<key>/` holding `index.faiss` (FAISS's own writer),
`chunks.jsonl` (text + metadata, one chunk per line), one `bm25-<scheme>/` folder per BM25
term scheme asked for (lexical.py), `pages/` (the vectors of each page's title, headings and lead,
pages.py; numpy files), `windows-<size>-<stride>/` when sentence windows are used (windows.py) and
`manifest.json` (key, sizes, sha256 of every file, seconds each derived folder took).
We deliberately skip `FAISS.save_local`: its docstore is a pickle, and loading a pickle runs code.
A folder whose checksums do not match is never loaded.
Scores: cosine similarity (inner product of unit vectors) or, with metric l2, squared L2 distance.
A published index is only read: loading takes no lock and writes nothing, and the vectors are
memory-mapped read-only (index.mmap), so the workers of one node share their pages.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import time
from collections.abc import Callable
from pathlib import Path

import faiss
import numpy as np
from langchain_community.docstore.in_memory import InMemoryDocstore
from langchain_community.vectorstores import FAISS
from langchain_community.vectorstores.utils import DistanceStrategy
from langchain_core.documents import Document
from threadpoolctl import threadpool_limits

from .config import Config, CorpusConfig, IndexConfig
from .corpus import fingerprint, load_documents, split
from .embeddings import Encoder
from .lexical import Lexical, LexicalScheme
from .pages import PageVectors
from .vectorsets import embed_with_progress
from .windows import WindowVectors, windows_folder

logger = logging.getLogger(__name__)

# 2: adds the BM25 index (its scheme folders are added on demand, no version bump);
# 3: chunks carry page metadata (published, authors, tags) read by the crawler.
FORMAT_VERSION = 3
ADDED_SINCE_FORMAT = {"chunk_unit": "chars"}  # corpus settings added since FORMAT_VERSION, with their defaults
_DEFAULTS = IndexConfig()
DEFAULT_SCHEME = LexicalScheme(_DEFAULTS.bm25_numbers, _DEFAULTS.bm25_title, _DEFAULTS.bm25_metadata)
PAGES_FOLDER = "pages"
# IO_FLAG_MMAP alone maps only on-disk IVF lists; a flat index's vectors need IO_FLAG_MMAP_IFC
# (IndexFlatCodes), checked on faiss 1.15: /proc/<pid>/maps shows index.faiss only with it.
MMAP_FLAGS = faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY


class IndexError_(RuntimeError):
    """An index folder is missing, corrupted or was built from another config."""


def index_key(cfg: Config) -> str:
    """Hash of everything that changes the index content: corpus, chunking, model, pooling, metric."""
    weights = Path(cfg.embedding.model_path) / "model.safetensors"
    identity = {
        "corpus": {**_keyed_fields(cfg.corpus), "source": fingerprint(cfg.corpus)},
        "model": Path(cfg.embedding.model_path).name,
        "weights_bytes": weights.stat().st_size if weights.exists() else None,
        "max_seq_length": cfg.embedding.max_seq_length,
        "pooling": cfg.embedding.pooling,
        "metric": cfg.index.metric,
        "format": FORMAT_VERSION,
    }
    return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


def _keyed_fields(corpus: CorpusConfig) -> dict:
    """The corpus settings, less those added since FORMAT_VERSION that still have their default:
    indexes built before such a setting existed were built that way, so they keep their key."""
    return {
        name: value
        for name, value in dataclasses.asdict(corpus).items()
        if not (name in ADDED_SINCE_FORMAT and value == ADDED_SINCE_FORMAT[name])
    }


class Index:
    """A LangChain FAISS store plus batched search over many query vectors at once."""

    def __init__(
        self, store: FAISS, lexical: Lexical, pages: PageVectors | None = None, windows: WindowVectors | None = None
    ) -> None:
        self.store = store
        self.lexical = lexical
        self.pages = pages  # None until embedded (load_or_build always provides them)
        self.windows = windows  # sentence windows: only when the config uses them

    def __len__(self) -> int:
        return self.store.index.ntotal

    @classmethod
    def build(
        cls, chunks: list[Document], encoder: Encoder, metric: str = "cosine", scheme: LexicalScheme = DEFAULT_SCHEME
    ) -> Index:
        """Embed chunks (with progress lines) and put them in a new FAISS store, with BM25 beside it."""
        texts = [chunk.page_content for chunk in chunks]
        vectors = embed_with_progress(encoder, texts, "chunks")
        store = FAISS.from_embeddings(
            zip(texts, vectors.tolist(), strict=True),
            encoder,
            metadatas=[chunk.metadata for chunk in chunks],
            ids=[str(i) for i in range(len(chunks))],  # positions, not random uuids: reproducible
            distance_strategy=_strategy(metric),
        )
        return cls(store, _lexical_for(chunks, scheme))

    @property
    def metric(self) -> str:
        return _metric(self.store.distance_strategy)

    def dense_search(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """FAISS's (scores, positions), each (n, k), for all (n, dim) query vectors at once; -1 pads."""
        return self.store.index.search(_as_float32(vectors), k)

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

    def document(self, position: int) -> Document:
        return self.store.docstore.search(self.store.index_to_docstore_id[position])

    def documents(self) -> list[Document]:
        return [self.document(i) for i in range(len(self))]

    def save(self, folder: Path, key: str, build_s: float | None = None) -> None:
        """Write the three files, manifest last, so a crash never leaves a valid-looking folder."""
        folder.mkdir(parents=True, exist_ok=True)
        # A new file renamed over the old: workers that mapped the old one keep its pages (no SIGBUS).
        faiss.write_index(self.store.index, str(folder / "index.faiss.tmp"))
        (folder / "index.faiss.tmp").replace(folder / "index.faiss")
        with open(folder / "chunks.jsonl", "w", encoding="utf-8") as f:
            for i in range(len(self)):
                doc = self.document(i)
                f.write(json.dumps({"text": doc.page_content, "metadata": doc.metadata}, ensure_ascii=False) + "\n")
        saved = self.lexical.save(folder / self.lexical.scheme.folder)
        saved += self.pages.save(folder / PAGES_FOLDER) if self.pages else []
        files = ["index.faiss", "chunks.jsonl", *(str(p.relative_to(folder)) for p in saved)]
        manifest = {
            "key": key,
            "format": FORMAT_VERSION,
            "count": len(self),
            "metric": _metric(self.store.distance_strategy),
            "build_s": build_s,
            "sha256": {name: _sha256(folder / name) for name in files},
        }
        (folder / "manifest.json").write_text(json.dumps(manifest, indent=2))

    @classmethod
    def load(
        cls,
        folder: Path,
        key: str,
        encoder: Encoder,
        scheme: LexicalScheme = DEFAULT_SCHEME,
        mmap: bool = True,
        windows: str | None = None,
    ) -> Index:
        """Load a folder written by save(), after checking its key and checksums; mmap: map the vectors read-only.

        windows: the sentence-window folder to load with it (windows_folder()), None for none."""
        manifest = _read_manifest(folder)
        if manifest.get("key") != key:
            raise IndexError_(f"{folder} was built from another config (key {manifest.get('key')}, want {key})")
        if not _has_lexical(manifest, scheme):
            raise IndexError_(f"{folder} has no {scheme.folder} index")
        if windows and not _has_folder(manifest, windows):
            raise IndexError_(f"{folder} has no {windows} vectors")
        for name, digest in manifest["sha256"].items():
            if _sha256(folder / name) != digest:
                raise IndexError_(f"{folder / name} is corrupted (sha256 mismatch)")
        faiss_index = faiss.read_index(str(folder / "index.faiss"), MMAP_FLAGS if mmap else 0)
        with open(folder / "chunks.jsonl", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        documents = [Document(row["text"], metadata=row["metadata"], id=str(i)) for i, row in enumerate(rows)]
        if faiss_index.ntotal != len(documents):
            raise IndexError_(f"{folder}: {faiss_index.ntotal} vectors but {len(documents)} chunks")
        ids = [str(i) for i in range(len(documents))]
        store = FAISS(
            encoder,
            faiss_index,
            InMemoryDocstore(dict(zip(ids, documents, strict=True))),
            dict(enumerate(ids)),
            distance_strategy=_strategy(manifest["metric"]),
        )
        pages = PageVectors.load(folder / PAGES_FOLDER) if _has_pages(manifest) else None
        window_vectors = WindowVectors.load(folder / windows, mmap) if windows else None
        return cls(store, Lexical.load(folder / scheme.folder, scheme), pages, window_vectors)

    @classmethod
    def load_or_build(cls, cfg: Config, encoder: Encoder) -> Index:
        """Load `<index.dir>/<key>` or build it; a file lock makes concurrent workers build once.

        A complete index (manifest written last) loads without the lock and without writing, so a
        published, read-only archive works; only a missing or broken one takes the lock.
        """
        key = index_key(cfg)
        folder = Path(cfg.index.dir) / key
        scheme = _scheme(cfg.index)
        windows = _windows(cfg)
        if _is_complete(_manifest_or_empty(folder), scheme, windows):
            try:
                return cls.load(folder, key, encoder, scheme, cfg.index.mmap, windows)
            except IndexError_ as err:
                logger.warning("index %s unusable, rebuilding under the lock: %s", folder, err)
        folder.parent.mkdir(parents=True, exist_ok=True)
        with open(folder.parent / f"{key}.lock", "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # a second worker waits here, then loads
            if (folder / "manifest.json").exists():
                try:
                    _add_lexical_if_missing(folder, scheme)
                    _add_pages_if_missing(folder, encoder)
                    _add_windows_if_missing(folder, encoder, cfg.index, windows)
                    return cls.load(folder, key, encoder, scheme, cfg.index.mmap, windows)
                except IndexError_ as err:
                    logger.warning("rebuilding index: %s", err)
            cls._build_and_save(cfg, encoder, folder, key)
            _add_windows_if_missing(folder, encoder, cfg.index, windows)  # from the saved chunks, like an old index
            return cls.load(folder, key, encoder, scheme, cfg.index.mmap, windows)

    @classmethod
    def _build_and_save(cls, cfg: Config, encoder: Encoder, folder: Path, key: str) -> None:
        start = time.perf_counter()
        documents = load_documents(cfg.corpus)
        chunks = split(documents, cfg.corpus, cfg.embedding.model_path)
        logger.info("building index %s: %d documents, %d chunks", key, len(documents), len(chunks))
        index = cls.build(chunks, encoder, cfg.index.metric, _scheme(cfg.index))
        index.pages = PageVectors.embed(chunks, encoder)
        build_s = time.perf_counter() - start
        index.save(folder, key, build_s)
        logger.info("index %s built in %.1f s", folder, build_s)


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


def _scheme(cfg: IndexConfig) -> LexicalScheme:
    return LexicalScheme(numbers=cfg.bm25_numbers, title=cfg.bm25_title, metadata=cfg.bm25_metadata)


def _lexical_for(chunks: list[Document], scheme: LexicalScheme) -> Lexical:
    return Lexical.build(
        [chunk.page_content for chunk in chunks], [scheme.header(chunk.metadata) for chunk in chunks], scheme
    )


def _has_folder(manifest: dict, folder: str) -> bool:
    """Whether the manifest checksums files under this derived folder (a BM25 scheme, pages/)."""
    return any(name.startswith(folder + "/") for name in manifest.get("sha256", {}))


def _has_lexical(manifest: dict, scheme: LexicalScheme) -> bool:
    return _has_folder(manifest, scheme.folder)


def _has_pages(manifest: dict) -> bool:
    return _has_folder(manifest, PAGES_FOLDER)


def _is_complete(manifest: dict, scheme: LexicalScheme, windows: str | None) -> bool:
    return _has_lexical(manifest, scheme) and _has_pages(manifest) and (not windows or _has_folder(manifest, windows))


def _windows(cfg: Config) -> str | None:
    """The sentence-window folder this config reads, or None."""
    return windows_folder(cfg.index.window_sentences, cfg.index.window_stride) if cfg.uses_windows else None


def _add_lexical_if_missing(folder: Path, scheme: LexicalScheme) -> None:
    """Derive another BM25 scheme from the saved chunks (seconds; nothing is re-embedded)."""
    if not _has_lexical(_read_manifest(folder), scheme):
        _add_derived(folder, scheme.folder, lambda chunks: _lexical_for(chunks, scheme).save(folder / scheme.folder))


def _add_pages_if_missing(folder: Path, encoder: Encoder) -> None:
    """Embed the page records of an index saved without them (its chunks are not re-embedded)."""
    if not _has_pages(_read_manifest(folder)):
        _add_derived(
            folder, PAGES_FOLDER, lambda chunks: PageVectors.embed(chunks, encoder).save(folder / PAGES_FOLDER)
        )


def _add_windows_if_missing(folder: Path, encoder: Encoder, cfg: IndexConfig, windows: str | None) -> None:
    """Embed the sentence windows of the saved chunks (about as long as embedding the chunks)."""
    if windows and not _has_folder(_read_manifest(folder), windows):
        size, stride = cfg.window_sentences, cfg.window_stride
        _add_derived(
            folder, windows, lambda chunks: WindowVectors.embed(chunks, encoder, size, stride).save(folder / windows)
        )


def _add_derived(folder: Path, name: str, derive: Callable[[list[Document]], list[Path]]) -> None:
    """Write files derived from the saved chunks and add their checksums (and seconds) to the manifest."""
    manifest = _read_manifest(folder)
    if _sha256(folder / "chunks.jsonl") != manifest["sha256"].get("chunks.jsonl"):
        raise IndexError_(f"{folder / 'chunks.jsonl'} is corrupted (sha256 mismatch)")
    with open(folder / "chunks.jsonl", encoding="utf-8") as f:
        chunks = [Document(row["text"], metadata=row["metadata"]) for row in map(json.loads, f)]
    start = time.perf_counter()
    saved = derive(chunks)
    manifest.setdefault("derived_s", {})[name] = round(time.perf_counter() - start, 1)
    manifest["sha256"].update({str(p.relative_to(folder)): _sha256(p) for p in saved})
    staged = folder / "manifest.json.tmp"
    staged.write_text(json.dumps(manifest, indent=2))
    staged.replace(folder / "manifest.json")  # atomic: a crash leaves the old manifest
    logger.info("added %s to %s", name, folder)


def _as_float32(vectors: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(vectors, dtype=np.float32)


def _strategy(metric: str) -> DistanceStrategy:
    return DistanceStrategy.MAX_INNER_PRODUCT if metric == "cosine" else DistanceStrategy.EUCLIDEAN_DISTANCE


def _metric(strategy: DistanceStrategy) -> str:
    return "cosine" if strategy == DistanceStrategy.MAX_INNER_PRODUCT else "l2"


def _manifest_or_empty(folder: Path) -> dict:
    try:
        return _read_manifest(folder)
    except IndexError_:
        return {}


def _read_manifest(folder: Path) -> dict:
    try:
        return json.loads((folder / "manifest.json").read_text())
    except (OSError, ValueError) as err:
        raise IndexError_(f"{folder}: no readable manifest.json ({err})") from err


def _sha256(path: Path) -> str:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as err:
        raise IndexError_(f"{path}: {err}") from err
