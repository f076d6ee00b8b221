"""Sentence embeddings: tokenize -> transformer -> mean-pool -> L2-normalise, as a LangChain Embeddings.

Public names: Encoder.
The model runs in one of backends.py's backends (torch eager, torch compiled, ONNX Runtime).
`Encoder.embed(texts)` returns an (n, dim) float32 array with unit-norm rows, equal to
sentence-transformers' `encode(..., normalize_embeddings=True)` for all-mpnet-base-v2 (whose
modules.json is Transformer -> mean Pooling -> Normalize). `pooling: cls_pooler` reproduces the
original demo's `pooler_output` (not normalised) for comparison only. No network, no TorchServe.
"""

from __future__ import annotations

import logging
import time
from functools import partial

import numpy as np
import torch
from langchain_core.embeddings import Embeddings
from transformers import AutoConfig, AutoTokenizer

from ragserve.compilation import warm_up
from ragserve.config import CompileConfig, EmbeddingConfig
from ragserve.embedding.backends import make_backend

logger = logging.getLogger(__name__)

# Warm-up shapes: batch 1 and batch >= 2 are the two graphs of the dynamic-shape policy.
WARM_UP_TEXTS = [["What is new in Llama 3.1?"], ["a short text", "a slightly longer text to pad the batch"]]


class Encoder(Embeddings):
    """Owns the tokenizer and the model (torch, optionally compiled, or ONNX Runtime); embeds texts in
    length-sorted batches."""

    def __init__(
        self, cfg: EmbeddingConfig, compile_cfg: CompileConfig, device: str = "cpu", export_missing: bool = True
    ) -> None:
        self.cfg = cfg
        start = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
        self.dimension = int(AutoConfig.from_pretrained(cfg.model_path).hidden_size)
        self.backend = make_backend(cfg, compile_cfg, device, export_missing)
        logger.info("loaded %s (%s) in %.1f s", cfg.model_path, cfg.backend, time.perf_counter() - start)
        self.warm_up_s = sum(warm_up(self.embed, WARM_UP_TEXTS)) if self.backend.compiled else 0.0

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns (len(texts), dim) float32, rows in the order of texts."""
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for batch in self.batches(texts):
            vectors[batch] = self._forward([texts[i] for i in batch])
        return vectors

    def batches(self, texts: list[str]) -> list[list[int]]:
        """Positions of texts, longest first, in batches: batch_size texts each, or (batch_tokens > 0) as many
        as fit batch_tokens padded tokens, so a device gets batches of one size in tokens, not in texts."""
        if not self.cfg.batch_tokens:  # sorting by length keeps each batch's padding small
            order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
            return [order[start : start + self.cfg.batch_size] for start in range(0, len(texts), self.cfg.batch_size)]
        tokens = self.count_tokens(texts)
        order = sorted(range(len(texts)), key=lambda i: tokens[i], reverse=True)
        batches: list[list[int]] = []
        for i in order:  # the first text of a batch is its longest: it sets the padded length
            if batches and (len(batches[-1]) + 1) * tokens[batches[-1][0]] <= self.cfg.batch_tokens:
                batches[-1].append(i)
            else:
                batches.append([i])
        return batches

    def embed_spans(self, texts: list[str], spans: list[list[tuple[int, int]]]) -> tuple[np.ndarray, list[np.ndarray]]:
        """One forward pass per text gives its vector and one vector per (start, end) character span of it: the
        mean of the token embeddings that overlap the span, L2-normalised (mean pooling only). Returns the
        (len(texts), dim) text vectors (equal to embed's up to float rounding) and, per text, (len(spans), dim).
        A span past max_seq_length (no token read) is embedded as a text of its own."""
        if self.cfg.pooling != "mean":
            raise ValueError(f"span vectors need embedding.pooling: mean, not {self.cfg.pooling!r}")
        whole = np.empty((len(texts), self.dimension), dtype=np.float32)
        parts: list[np.ndarray] = [np.empty((0, self.dimension), np.float32)] * len(texts)
        for batch in self.batches(texts):
            encoded = self.tokenizer(
                [texts[i] for i in batch],
                padding=True,
                truncation=True,
                max_length=self.cfg.max_seq_length,
                return_offsets_mapping=True,
                return_tensors="np",
            )
            offsets = encoded.pop("offset_mapping")  # (n, seq, 2) characters of each token; (0, 0): special, padding
            hidden, mask = self.backend.run(partial(_as_tensors, dict(encoded)), tokens=True)  # tokenized once
            whole[batch] = _unit(_masked_mean(hidden, mask.astype(np.float32)))
            for row, i in enumerate(batch):
                starts, ends = offsets[row, :, 0], offsets[row, :, 1]
                real = (ends > starts)[None, :]  # (1, seq): tokens of the text, not special or padding
                bounds = np.array(spans[i], dtype=np.int64).reshape(-1, 2)  # (k, 2)
                inside = real & (starts[None, :] < bounds[:, 1:]) & (ends[None, :] > bounds[:, :1])  # (k, seq)
                parts[i] = _unit(inside.astype(np.float32) @ hidden[row] / np.maximum(inside.sum(1, keepdims=True), 1))
                for k in np.flatnonzero(~inside.any(1)):  # cut off by max_seq_length: embedded on its own
                    parts[i][k] = self.embed([texts[i][bounds[k, 0] : bounds[k, 1]]])[0]
        return whole, parts

    def count_tokens(self, texts: list[str], truncate: bool = True) -> list[int]:
        """Tokens of each text, special tokens included: those the model reads (cut at max_seq_length), or with
        truncate=False all of them (how far a text runs past what the model reads)."""
        if truncate:
            encoded = self.tokenizer(texts, truncation=True, max_length=self.cfg.max_seq_length)
        else:  # verbose=False: no "longer than the specified maximum" warning, that is what is being measured
            encoded = self.tokenizer(texts, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()

    def _forward(self, texts: list[str]) -> np.ndarray:
        return self.backend.run(lambda tensors: self._tokenize(texts, tensors))  # (n, dim)

    def _tokenize(self, texts: list[str], tensors: str) -> dict:
        return self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.cfg.max_seq_length, return_tensors=tensors
        )


def _as_tensors(encoded: dict[str, np.ndarray], tensors: str) -> dict:
    """Tokenizer output already computed, in the tensor kind a backend reads ("np" or "pt")."""
    return encoded if tensors == "np" else {name: torch.from_numpy(array) for name, array in encoded.items()}


def _masked_mean(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(n, seq, dim) token embeddings, (n, seq) mask -> (n, dim) mean over the masked tokens."""
    return np.einsum("nsd,ns->nd", hidden, mask) / np.maximum(mask.sum(1, keepdims=True), 1e-9)


def _unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)).astype(np.float32)
