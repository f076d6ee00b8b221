"""Embedding cache: a text's vector is computed once per model, whatever version or refresh asks for it.

Public names: EmbeddingCache, cache_key.
EmbeddingCache stands in for an Encoder wherever the builder embeds (chunks, page records, sentence windows);
fill() embeds everything a build lacks first, in parts of STORE_EVERY texts, each stored before the next starts
(on a Ray cluster, a job per part: distributed.py), under a progress bar (progress.py).
One SQLite database per model identity (cache_key: the model's content sha256, max_seq_length, pooling, int8
recipe: everything that changes a vector), one row per text: the sha256 of the text -> its float32 vector. A
refresh asks for every chunk, sentence window and page record text of the new version; only those the
cache lacks reach the encoder. SQLite (standard library) serialises concurrent writers and stores no
pickle. The backend (torch, compiled, ONNX Runtime) is not in the key: they agree to float rounding.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ragserve.config import EmbeddingConfig
from ragserve.embedding.fingerprint import model_fingerprint
from ragserve.embedding.int8 import int8_identity
from ragserve.embedding.progress import progress_bar

if TYPE_CHECKING:
    from tqdm import tqdm

    from ragserve.embedding.encoder import Encoder

logger = logging.getLogger(__name__)
LOOKUP_ROWS = 500  # keys per SELECT ... IN (...): SQLite allows 999 parameters by default
# Texts per part: each part is embedded, then written in one transaction, before the next starts, so a build
# stopped after an hour keeps that hour. 256 texts: about a minute on 2 CPU cores (chunks of 1000 characters
# at 3-4 texts/s), a second on a GPU; a Ray job each (RayEncoder).
STORE_EVERY = 256


def model_identity(cfg: EmbeddingConfig) -> dict[str, Any]:
    """Everything that changes a vector: the model's content (fingerprint.py: weights, tokenizer, configs),
    max_seq_length, pooling, and an int8 export's recipe and how it runs (float32 adds no key)."""
    identity = {
        "model": Path(cfg.model_path).name,
        "content_sha256": model_fingerprint(Path(cfg.model_path)),  # None: a hub id (its name alone)
        "max_seq_length": cfg.max_seq_length,
        "pooling": cfg.pooling,
    }
    if cfg.precision != "fp32":
        identity["precision"] = int8_identity(cfg.backend)
    return identity


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
        stored = self._store_spans(
            [texts[i] for i in todo], [list(spans[i]) for i in todo], [span_keys[i] for i in todo]
        )
        found.update(stored)
        keys = [_sha256(text) for text in texts]
        whole = {key: stored[key] for key in set(keys) if key in stored}  # sha256 of a text -> its vector
        whole.update(self._lookup(sorted(set(keys) - set(whole))))  # only the texts no pass above computed
        dim = self.dimension
        text_vectors = np.stack([whole[key] for key in keys]) if keys else np.empty((0, dim), np.float32)
        return text_vectors, [
            np.stack([found[key] for key in k]) if k else np.empty((0, dim), np.float32) for k in span_keys
        ]

    def fill(self, groups: dict[str, Sequence[str]]) -> dict[str, int]:
        """Embed every text of every group that the cache lacks, in one run of parts (_store); the new texts per
        group (a text in two groups counts in the first). A build calls it once: one progress bar for it all."""
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
        """Embed missing (sha256 -> text) and write the vectors; sha256 -> vector. Embedded and written STORE_EVERY
        texts at a time, each part stored before the next starts, under a progress bar (progress.py)."""
        stored: dict[str, np.ndarray] = {}
        items = list(missing.items())
        if not items:
            return stored
        self.encoder  # noqa: B018 - loaded before the bar starts: a model's load time is no embedding rate
        with progress_bar(len(items), "embedding new texts") as bar:
            for begin in range(0, len(items), STORE_EVERY):
                part = dict(items[begin : begin + STORE_EVERY])
                rows = dict(zip(part, self._encode(list(part.values()), bar), strict=True))
                self._write(rows)
                self.embedded += len(part)
                stored.update(rows)
        return stored

    def _store_spans(
        self, texts: list[str], spans: list[list[tuple[int, int]]], span_keys: list[list[str]]
    ) -> dict[str, np.ndarray]:
        """Embed texts with their spans and write each text's row and its spans' rows; key -> vector. STORE_EVERY
        texts at a time, each part stored before the next starts, under a progress bar, as _store."""
        stored: dict[str, np.ndarray] = {}
        if not texts:
            return stored
        self.encoder  # noqa: B018 - loaded before the bar starts: a model's load time is no embedding rate
        with progress_bar(len(texts), "embedding texts with their spans") as bar:
            for start in range(0, len(texts), STORE_EVERY):
                part = slice(start, start + STORE_EVERY)
                vectors, per_text = self._encode_spans(texts[part], spans[part], bar)
                rows = {_sha256(text): vector for text, vector in zip(texts[part], vectors, strict=True)}
                for keys, span_vectors in zip(span_keys[part], per_text, strict=True):
                    rows.update(zip(keys, span_vectors, strict=True))
                self._write(rows)
                self.embedded += len(vectors)
                stored.update(rows)
        return stored

    def _batches(self, texts: list[str]) -> list[list[int]]:
        """The encoder's own batches of texts (Encoder.batches), so the bar moves every few seconds on a CPU;
        one batch of them all for an encoder that does not say (RayEncoder: one Ray job per part)."""
        if hasattr(self.encoder, "batches"):
            return self.encoder.batches(texts)
        return [list(range(len(texts)))]

    def _encode(self, texts: list[str], bar: tqdm) -> np.ndarray:
        """(len(texts), dim) float32: encoder.embed(texts), asked batch by batch (the same vectors, same batches)."""
        vectors = np.empty((len(texts), self.encoder.dimension), np.float32)
        for batch in self._batches(texts):
            vectors[batch] = self.encoder.embed([texts[i] for i in batch])
            bar.update(len(batch))
        return vectors

    def _encode_spans(
        self, texts: list[str], spans: list[list[tuple[int, int]]], bar: tqdm
    ) -> tuple[np.ndarray, list[np.ndarray]]:
        """encoder.embed_spans(texts, spans), asked batch by batch like _encode."""
        vectors = np.empty((len(texts), self.encoder.dimension), np.float32)
        per_text: list[np.ndarray] = [np.empty((0, self.encoder.dimension), np.float32)] * len(texts)
        for batch in self._batches(texts):
            batch_vectors, batch_spans = self.encoder.embed_spans([texts[i] for i in batch], [spans[i] for i in batch])
            vectors[batch] = batch_vectors
            for i, span_vectors in zip(batch, batch_spans, strict=True):
                per_text[i] = span_vectors
            bar.update(len(batch))
        return vectors, per_text

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
