"""ONNX Runtime backend for the embedder (`embedding.backend: onnxruntime`).

Public names: onnx_file, OnnxRunner.
The same SentenceEmbedder (transformer + mean pooling + L2 normalisation) is exported once with
torch.onnx (dynamic batch and sequence axes) into the model folder's `onnx/`, so `make archive`
ships it with the weights and a worker only loads it: nothing is compiled at start. On this
project's 2-core x86 box ONNX Runtime ran the encoder about twice as fast as torch eager or
compiled, with the same vectors (benchmarks/embed_bench.py; docs/results/embedding.md).
"""

from __future__ import annotations

import fcntl
import logging
import re
import time
import warnings
from pathlib import Path

import numpy as np
import torch

from ragserve.config import EmbeddingConfig
from ragserve.embedding.fingerprint import model_fingerprint
from ragserve.embedding.int8 import INT8_RECIPE, calibration_texts, prepare_int8, quantize_export
from ragserve.embedding.module import SentenceEmbedder

logger = logging.getLogger(__name__)

EXPORT_EXAMPLE = ["an example", "a second, longer example text"]


def onnx_file(cfg: EmbeddingConfig, pooling: str | None = None) -> Path:
    """Where the export of this model (its content fingerprint), pooling (cfg's, or "tokens": no pooling),
    precision and torch version lives (inside the model folder); int8 files carry their recipe (int8.INT8_RECIPE).
    A checkpoint saved over the folder is a new file name, so an old export is never run for new weights."""
    version = re.sub(r"[^\w.]", "_", torch.__version__)
    fingerprint = model_fingerprint(Path(cfg.model_path))
    content = f"-{fingerprint[:12]}" if fingerprint else ""
    precision = "" if cfg.precision == "fp32" else f"-{INT8_RECIPE}"
    name = f"model-{pooling or cfg.pooling}-{cfg.max_seq_length}-torch{version}{content}{precision}.onnx"
    return Path(cfg.model_path) / "onnx" / name


def output_name(pooling: str) -> str:
    return "token_embeddings" if pooling == "tokens" else "sentence_embedding"


def export(cfg: EmbeddingConfig, path: Path, pooling: str) -> None:
    """Export transformer + pooling + normalisation; written beside, then renamed (never half a file). int8:
    the float32 graph of int8.prepare_int8's rewritten model, then ONNX Runtime's dynamic quantization."""
    from transformers import AutoModel, AutoTokenizer

    start = time.perf_counter()
    tokenizer = AutoTokenizer.from_pretrained(cfg.model_path)
    model = SentenceEmbedder(AutoModel.from_pretrained(cfg.model_path).eval(), pooling).eval()
    outliers = 0
    if cfg.precision == "int8":
        outliers = prepare_int8(model, tokenizer, calibration_texts(cfg.model_path), cfg.max_seq_length)
    example = tokenizer(EXPORT_EXAMPLE, padding=True, return_tensors="pt")
    batch = torch.export.Dim("batch", min=1, max=4096)
    seq = torch.export.Dim("seq", min=1, max=cfg.max_seq_length)
    axes = {0: batch, 1: seq}
    partial = path.with_suffix(".partial")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's notes on ops it does not need
        torch.onnx.export(
            model,
            (example["input_ids"], example["attention_mask"]),
            str(partial),
            input_names=["input_ids", "attention_mask"],
            output_names=[output_name(pooling)],
            dynamic_shapes={"input_ids": axes, "attention_mask": axes},
            dynamo=True,
            external_data=False,
            verbose=False,
        )
    if cfg.precision == "int8":
        quantized = path.with_suffix(".int8.partial")
        quantize_export(partial, quantized, outliers)
        partial.unlink()
        partial = quantized
    partial.replace(path)
    logger.info("exported %s in %.1f s", path, time.perf_counter() - start)


class OnnxRunner:
    """An onnxruntime session over the exported file (exported first, under a lock, when missing)."""

    def __init__(self, cfg: EmbeddingConfig, threads: int, pooling: str | None = None) -> None:
        import onnxruntime as ort

        self.pooling = pooling or cfg.pooling
        path = onnx_file(cfg, self.pooling)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with open(path.with_suffix(".lock"), "w") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)  # one exporter; other workers wait, then load
                if not path.exists():
                    export(cfg, path, self.pooling)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads  # the worker's OMP_NUM_THREADS, as torch uses
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.path = path
        # int8: ONNX Runtime's dynamic quantization takes one activation scale per tensor, so in a batch a text's
        # vector would move with its neighbours and their padding (cosine 0.9956 at worst). Each text runs alone,
        # on its own tokens: the same text always gives the same vector. Measured no slower on CPU (one question
        # alike; chunks faster, no padding): docs/results/embedding.md.
        self.alone = cfg.precision == "int8"

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(n, seq) int64 token ids and mask -> (n, dim) float32 unit rows (pooling "tokens": (n, seq, dim), zeros
        at padding when each text runs alone)."""
        input_ids, attention_mask = input_ids.astype(np.int64), attention_mask.astype(np.int64)
        if not self.alone:
            return self._run(input_ids, attention_mask)
        rows = []
        for ids, mask in zip(input_ids, attention_mask, strict=True):
            real = mask.astype(bool)
            out = self._run(ids[real][None], mask[real][None])[0]
            if self.pooling == "tokens":  # back to the batch's positions
                padded = np.zeros((len(ids), out.shape[-1]), dtype=out.dtype)
                padded[real] = out
                out = padded
            rows.append(out)
        return np.stack(rows)

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.session.run([output_name(self.pooling)], feeds)[0]
