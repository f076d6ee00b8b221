"""Embedding cache: a text's vector is computed once per model, whatever version or refresh asks for it.

Public names: EmbeddingCache, cache_key.
EmbeddingCache stands in for an Encoder wherever the builder embeds (chunks, page records, sentence windows);
fill() embeds everything a build lacks in one encoder call first (on a Ray cluster: one job, distributed.py).
One SQLite database per model identity (cache_key: the model, its weights' size, max_seq_length, pooling:
everything that changes a vector), one row per text: the sha256 of the text -> its float32 vector. A
refresh asks for every chunk, sentence window and page record text of the new version; only those the
cache lacks reach the encoder. SQLite (standard library) serialises concurrent writers and stores no
pickle. The backend (torch, compiled, ONNX Runtime) is not in the key: they agree to float rounding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragserve.config import EmbeddingConfig

if TYPE_CHECKING:
    from ragserve.embedding.encoder import Encoder

logger = logging.getLogger(__name__)
LOOKUP_ROWS = 500  # keys per SELECT ... IN (...): SQLite allows 999 parameters by default
STORE_EVERY = 2048  # texts per encoder call and transaction: minutes of CPU work each, seconds on a GPU


def model_identity(cfg: EmbeddingConfig) -> dict[str, Any]:
    """Everything that changes a vector: the model, its weights' size, max_seq_length, pooling."""
    weights = Path(cfg.model_path) / "model.safetensors"
    return {
        "model": Path(cfg.model_path).name,
        "weights_bytes": weights.stat().st_size if weights.exists() else None,
        "max_seq_length": cfg.max_seq_length,
        "pooling": cfg.pooling,
    }


def cache_key(cfg: EmbeddingConfig) -> str:
    return hashlib.sha256(json.dumps(model_identity(cfg), sort_keys=True).encode()).hexdigest()[:16]


class EmbeddingCache:
    """An Encoder look-alike (embed, dimension) that answers from one SQLite file and embeds only what it lacks.

    encoder: called the first time a text is missing, so a refresh that changed nothing loads no model.
    embedded counts the texts the encoder computed, for the build report."""

    def __init__(self, path: Path, encoder: Callable[[], Encoder]) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._encoder_factory = encoder
        self._encoder: Encoder | None = None
        self.embedded = 0
        self.db = sqlite3.connect(path, timeout=60)
        self.db.execute("CREATE TABLE IF NOT EXISTS vectors (text_sha256 TEXT PRIMARY KEY, vector BLOB NOT NULL)")

    def close(self) -> None:
        self.db.close()

    def __len__(self) -> int:
        return self.db.execute("SELECT COUNT(*) FROM vectors").fetchone()[0]

    @property
    def encoder(self) -> Encoder:
        if self._encoder is None:
            self._encoder = self._encoder_factory()
        return self._encoder

    @property
    def dimension(self) -> int:
        row = self.db.execute("SELECT vector FROM vectors LIMIT 1").fetchone()
        return len(row[0]) // 4 if row else self.encoder.dimension

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dim) float32 unit vectors, from the cache or, for texts it lacks, from the encoder."""
        keys = [_sha256(text) for text in texts]
        found = self._lookup(sorted(set(keys)))
        missing = {key: text for key, text in zip(keys, texts, strict=True) if key not in found}
        found.update(self._store(missing))
        if not keys:
            return np.empty((0, self.dimension), np.float32)
        return np.stack([found[key] for key in keys])

    def embed_spans(
        self, texts: Sequence[str], spans: Sequence[Sequence[tuple[int, int]]]
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """Encoder.embed_spans from the cache: a span's row is keyed by its text and its character range. A text
        with any span missing goes through the encoder whole, which stores its own vector too (one pass)."""
        span_keys = [
            [_sha256(f"\x00span {a}:{b}\x00{text}") for a, b in text_spans]
            for text, text_spans in zip(texts, spans, strict=True)
        ]
        found = self._lookup(sorted({key for keys in span_keys for key in keys}))
        todo = [i for i, keys in enumerate(span_keys) if any(key not in found for key in keys)]
        whole: dict[str, np.ndarray] = {}  # sha256 of a text -> its vector, as the passes below compute them
        for start in range(0, len(todo), STORE_EVERY):  # stored as it goes: a stopped build keeps what it paid for
            part = todo[start : start + STORE_EVERY]
            begun = time.perf_counter()
            vectors, per_text = self.encoder.embed_spans([texts[i] for i in part], [list(spans[i]) for i in part])
            rows = {_sha256(texts[i]): vector for i, vector in zip(part, vectors, strict=True)}
            whole.update(rows)
            for i, span_vectors in zip(part, per_text, strict=True):
                rows.update(zip(span_keys[i], span_vectors, strict=True))
            self._write(rows)
            found.update(rows)
            self.embedded += len(part)
            logger.info(
                "embedded %d/%d texts with their spans in %.1f s",
                start + len(part),
                len(todo),
                time.perf_counter() - begun,
            )
        keys = [_sha256(text) for text in texts]
        whole.update(self._lookup(sorted(set(keys) - set(whole))))  # only the texts no pass above computed
        dim = self.dimension
        text_vectors = np.stack([whole[key] for key in keys]) if keys else np.empty((0, dim), np.float32)
        return text_vectors, [
            np.stack([found[key] for key in k]) if k else np.empty((0, dim), np.float32) for k in span_keys
        ]

    def fill(self, groups: dict[str, Sequence[str]]) -> dict[str, int]:
        """Embed every text of every group that the cache lacks, in one encoder call; the new texts per group
        (a text in two groups counts in the first). A build calls it once, so a Ray cluster runs one job."""
        missing: dict[str, str] = {}
        new = {}
        for group, texts in groups.items():
            keys = {_sha256(text): text for text in texts}
            known = self._known(sorted(keys))
            fresh = {key: text for key, text in keys.items() if key not in known and key not in missing}
            missing.update(fresh)
            new[group] = len(fresh)
        self._store(missing)
        return new

    def _store(self, missing: dict[str, str]) -> dict[str, np.ndarray]:
        """Embed missing (sha256 -> text) and write the vectors; sha256 -> vector. Written STORE_EVERY texts at a
        time (one encoder call each, so a Ray job per slice), so a build stopped after an hour keeps that hour."""
        stored: dict[str, np.ndarray] = {}
        items = list(missing.items())
        for begin in range(0, len(items), STORE_EVERY):
            part = dict(items[begin : begin + STORE_EVERY])
            start = time.perf_counter()
            vectors = self.encoder.embed(list(part.values())).astype(np.float32)
            seconds = time.perf_counter() - start  # the encoder's load (or a Ray job's start) included
            logger.info(
                "embedded %d/%d new texts in %.1f s (%.1f texts/s)",
                begin + len(part),
                len(items),
                seconds,
                len(part) / seconds,
            )
            rows = dict(zip(part, vectors, strict=True))
            self._write(rows)
            self.embedded += len(part)
            stored.update(rows)
        return stored

    def _write(self, rows: dict[str, np.ndarray]) -> None:
        """sha256 -> vector rows, in one transaction."""
        with self.db:
            self.db.executemany(
                "INSERT OR REPLACE INTO vectors VALUES (?, ?)",
                [(k, v.astype(np.float32).tobytes()) for k, v in rows.items()],
            )

    def _lookup(self, keys: list[str]) -> dict[str, np.ndarray]:
        found = {}
        for part, marks in _parts(keys):
            query = f"SELECT text_sha256, vector FROM vectors WHERE text_sha256 IN ({marks})"
            found.update((key, np.frombuffer(blob, np.float32)) for key, blob in self.db.execute(query, part))
        return found

    def _known(self, keys: list[str]) -> set[str]:
        """The keys the cache holds (without reading their vectors)."""
        known = set()
        for part, marks in _parts(keys):
            query = f"SELECT text_sha256 FROM vectors WHERE text_sha256 IN ({marks})"
            known.update(key for (key,) in self.db.execute(query, part))
        return known


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _parts(keys: list[str]) -> list[tuple[list[str], str]]:
    """keys in slices of LOOKUP_ROWS, each with its SQL placeholders."""
    parts = [keys[start : start + LOOKUP_ROWS] for start in range(0, len(keys), LOOKUP_ROWS)]
    return [(part, ",".join("?" * len(part))) for part in parts]
