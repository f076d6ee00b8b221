"""One interface over the encoder's three backends: torch eager, torch compiled and ONNX Runtime.

Public names: Backend, TorchBackend, make_backend.
A backend turns tokenized texts into (n, dim) float32 vectors, or with tokens=True into the
transformer's (n, seq, dim) token embeddings and the (n, seq) attention mask (for span vectors:
encoder.embed_spans). `tensors` says which tokenizer output it
reads ("pt" or "np"); `compiled` says whether the encoder must warm it up. The ONNX backend is
onnxrt.OnnxRunner.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

import numpy as np
import torch
from transformers import AutoModel, AutoTokenizer

from ragserve.compilation import compile_module
from ragserve.config import CompileConfig, EmbeddingConfig
from ragserve.embedding.int8 import calibration_texts, prepare_int8, quantize_torch
from ragserve.embedding.module import SentenceEmbedder
from ragserve.embedding.onnxrt import OnnxRunner

logger = logging.getLogger(__name__)

Tokenize = Callable[[str], dict]  # tensors ("pt" | "np") -> {"input_ids": (n, seq), "attention_mask": (n, seq)}


class Backend(Protocol):
    compiled: bool

    def run(self, tokenize: Tokenize, tokens: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        """Tokenize (with this backend's tensor kind) and embed; (n, dim) float32, or with tokens
        ((n, seq, dim) float32 token embeddings, (n, seq) mask)."""
        ...


class TorchBackend:
    """SentenceEmbedder on a torch device, eager or torch.compile'd; int8 through torchao when asked."""

    def __init__(self, cfg: EmbeddingConfig, compile_cfg: CompileConfig, device: str) -> None:
        self.device = torch.device(device)
        dtype = cfg.dtype if cfg.dtype != "auto" else ("float16" if self.device.type == "cuda" else "float32")
        transformer = AutoModel.from_pretrained(cfg.model_path, dtype=getattr(torch, dtype)).eval().to(self.device)
        self.model = SentenceEmbedder(transformer, cfg.pooling).eval()
        if cfg.precision == "int8":  # the ONNX path's rewrite, then torchao's int8 (per-token activations)
            tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
            texts = calibration_texts(cfg.model_path)
            quantize_torch(self.model, prepare_int8(self.model, tokenizer, texts, cfg.max_seq_length))
        self.compiled = compile_cfg.on(True)
        if self.compiled:
            compile_module(self.model, compile_cfg)

    def run(self, tokenize: Tokenize, tokens: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        # Tokenize inside inference mode too: tensors made outside it carry another dispatch key,
        # and dynamo would guard on the difference and recompile (warm-up runs inside it).
        with torch.inference_mode():
            encoded = tokenize("pt")
            input_ids = encoded["input_ids"].to(self.device)  # (n, seq)
            attention_mask = encoded["attention_mask"].to(self.device)  # (n, seq)
            if tokens:  # the transformer alone, eager: only index builds ask for token embeddings
                hidden = self.model.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
                return hidden.float().cpu().numpy(), encoded["attention_mask"].numpy()  # (n, seq, dim), (n, seq)
            return self.model(input_ids, attention_mask).float().cpu().numpy()  # (n, dim)


class OnnxBackend:
    """The exported SentenceEmbedder in ONNX Runtime: nothing to compile, exported at archive time."""

    compiled = False

    def __init__(self, cfg: EmbeddingConfig, export_missing: bool = True) -> None:
        self.cfg = cfg
        self.runner = OnnxRunner(cfg, torch.get_num_threads(), export_missing=export_missing)
        self.token_runner: OnnxRunner | None = None  # the transformer alone, exported when first asked for

    def run(self, tokenize: Tokenize, tokens: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
        encoded = tokenize("np")
        if tokens:
            if self.token_runner is None:
                self.token_runner = OnnxRunner(self.cfg, torch.get_num_threads(), pooling="tokens")
            hidden = self.token_runner(encoded["input_ids"], encoded["attention_mask"])  # (n, seq, dim)
            return hidden, encoded["attention_mask"]
        return self.runner(encoded["input_ids"], encoded["attention_mask"])  # (n, dim)


def make_backend(
    cfg: EmbeddingConfig, compile_cfg: CompileConfig, device: str = "cpu", export_missing: bool = True
) -> Backend:
    """The backend `embedding.backend` names ("torch", compiled when compile.enabled, or "onnxruntime"; without
    export_missing, a missing ONNX export is an error rather than exported)."""
    if cfg.backend == "onnxruntime":
        return OnnxBackend(cfg, export_missing)
    return TorchBackend(cfg, compile_cfg, device)
