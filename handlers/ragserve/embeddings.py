"""Sentence embeddings: tokenize -> transformer -> mean-pool -> L2-normalise, as a LangChain Embeddings.

Public names: Encoder, SentenceEmbedder.
`embedding.backend: onnxruntime` runs the same module exported to ONNX (onnxrt.py) instead of torch.
`Encoder.embed(texts)` returns an (n, dim) float32 array with unit-norm rows, equal to
sentence-transformers' `encode(..., normalize_embeddings=True)` for all-mpnet-base-v2 (whose
modules.json is Transformer -> mean Pooling -> Normalize). `pooling: cls_pooler` reproduces the
original demo's `pooler_output` (not normalised) for comparison only. No network, no TorchServe.
"""

from __future__ import annotations

import logging
import time

import numpy as np
import torch
import torch.nn.functional as F
from langchain_core.embeddings import Embeddings
from transformers import AutoConfig, AutoModel, AutoTokenizer

from .compilation import compile_module, warm_up
from .config import CompileConfig, EmbeddingConfig
from .onnxrt import OnnxRunner

logger = logging.getLogger(__name__)

# Warm-up shapes: batch 1 and batch >= 2 are the two graphs of the dynamic-shape policy.
WARM_UP_TEXTS = [["What is new in Llama 3.1?"], ["a short text", "a slightly longer text to pad the batch"]]


class SentenceEmbedder(torch.nn.Module):
    """Transformer plus pooling in one module, so torch.compile sees (and fuses) both."""

    def __init__(self, transformer: torch.nn.Module, pooling: str) -> None:
        super().__init__()
        self.transformer = transformer
        self.pooling = pooling

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        output = self.transformer(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "cls_pooler":
            return output.pooler_output  # (n, dim), the demo's choice: not what the model was trained for
        hidden = output.last_hidden_state  # (n, seq, dim)
        mask = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (n, seq, 1)
        mean = (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)  # (n, dim)
        return F.normalize(mean, p=2, dim=1)  # (n, dim), unit rows


class Encoder(Embeddings):
    """Owns the tokenizer and the model (torch, optionally compiled, or ONNX Runtime); embeds texts in
    length-sorted batches."""

    def __init__(self, cfg: EmbeddingConfig, compile_cfg: CompileConfig, device: str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        start = time.perf_counter()
        self.tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
        self.dimension = int(AutoConfig.from_pretrained(cfg.model_path).hidden_size)
        self.warm_up_s = 0.0
        if cfg.backend == "onnxruntime":
            self.onnx = OnnxRunner(cfg, torch.get_num_threads())  # nothing to compile: exported at archive time
            logger.info("loaded %s (ONNX Runtime) in %.1f s", self.onnx.path, time.perf_counter() - start)
            return
        transformer = AutoModel.from_pretrained(cfg.model_path).eval().to(self.device)
        self.model = SentenceEmbedder(transformer, cfg.pooling).eval()
        logger.info("loaded %s in %.1f s", cfg.model_path, time.perf_counter() - start)
        if compile_cfg.enabled:
            compile_module(self.model, compile_cfg)
            self.warm_up_s = sum(warm_up(self.embed, WARM_UP_TEXTS))

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed texts; returns (len(texts), dim) float32, rows in the order of texts."""
        # Sorting by length keeps each batch's padding small; `order` restores the caller's order.
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]), reverse=True)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), self.cfg.batch_size):
            batch = order[start : start + self.cfg.batch_size]
            vectors[batch] = self._forward([texts[i] for i in batch])
        return vectors

    def count_tokens(self, texts: list[str]) -> list[int]:
        """Tokens the model reads of each text (special tokens included, cut at max_seq_length)."""
        encoded = self.tokenizer(texts, truncation=True, max_length=self.cfg.max_seq_length)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return self.embed(texts).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed([text])[0].tolist()

    def _forward(self, texts: list[str]) -> np.ndarray:
        if self.cfg.backend == "onnxruntime":
            encoded = self._tokenize(texts, "np")
            return self.onnx(encoded["input_ids"], encoded["attention_mask"])  # (n, dim)
        # Tokenize inside inference mode too: tensors made outside it carry another dispatch key,
        # and dynamo would guard on the difference and recompile (warm-up runs inside it).
        with torch.inference_mode():
            encoded = self._tokenize(texts, "pt")
            input_ids = encoded["input_ids"].to(self.device)  # (n, seq)
            attention_mask = encoded["attention_mask"].to(self.device)  # (n, seq)
            return self.model(input_ids, attention_mask).float().cpu().numpy()  # (n, dim)

    def _tokenize(self, texts: list[str], tensors: str) -> dict:
        return self.tokenizer(
            texts, padding=True, truncation=True, max_length=self.cfg.max_seq_length, return_tensors=tensors
        )
