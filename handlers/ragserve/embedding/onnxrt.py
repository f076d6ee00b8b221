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
from ragserve.embedding.int8 import ALONE_MIN_TOKENS, INT8_RECIPE, calibration_texts, prepare_int8, quantize_export
from ragserve.embedding.module import SentenceEmbedder

logger = logging.getLogger(__name__)

EXPORT_EXAMPLE = ["an example", "a second, longer example text"]
# ONNX Runtime 1.32's fused SkipLayerNormalization ran 7x slower than the Add + LayerNormalization it replaces
# (1.40 against 0.21 ms at 8 x 36 x 768, 1 thread); in the encoder, 8 questions at 1 thread: float32 469 -> 385 ms,
# int8 195 -> 176 ms; at 2 threads no slower (2026-12-06, this 2-core x86).
UNFUSED = ["SkipLayerNormFusion"]


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
    """An onnxruntime session over the exported file (exported first, under a lock, when missing and
    export_missing; a serving worker passes False: an export is build work, and it names the command)."""

    def __init__(
        self, cfg: EmbeddingConfig, threads: int, pooling: str | None = None, export_missing: bool = True
    ) -> None:
        import onnxruntime as ort

        self.pooling = pooling or cfg.pooling
        path = onnx_file(cfg, self.pooling)
        if not path.exists() and not export_missing:
            raise FileNotFoundError(
                f"the ONNX export {path} is missing and a serving worker does not export: run `make models` "
                "(scripts/export_onnx.py --config <yaml>), or `make archive`, which ships it"
            )
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
        self.session = ort.InferenceSession(
            str(path), options, providers=["CPUExecutionProvider"], disabled_optimizers=UNFUSED
        )
        self.path = path
        # int8: ONNX Runtime's dynamic quantization takes one activation scale per tensor, so in a batch a text's
        # vector moves with its neighbours and their padding (cosine 0.9956 at worst). A text of ALONE_MIN_TOKENS
        # tokens or more (an index build's chunks) runs alone on its own tokens: the same vector in any batch, and no
        # slower, as long texts are compute-bound and alone they carry no padding (a build 1.7x faster). Shorter ones
        # (questions) run together on their shared tokens: alone, each would read every weight again (1.2-1.6x the
        # time at 16-64 tokens) and the endpoint's req/s fell below float32's, so a question's int8 vector still
        # moves slightly with its batch (docs/results/embedding.md).
        self.alone_from = ALONE_MIN_TOKENS if cfg.precision == "int8" else None

    def __call__(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        """(n, seq) int64 token ids and mask -> (n, dim) float32 unit rows (pooling "tokens": (n, seq, dim); int8:
        zeros at padding)."""
        input_ids, attention_mask = input_ids.astype(np.int64), attention_mask.astype(np.int64)
        if self.alone_from is None or not len(input_ids):
            return self._run(input_ids, attention_mask)
        long = attention_mask.sum(1) >= self.alone_from
        groups = [[i] for i in np.flatnonzero(long)] + ([np.flatnonzero(~long)] if not long.all() else [])
        out: np.ndarray | None = None
        for rows in groups:
            columns = np.flatnonzero(attention_mask[rows].any(0))  # the group's tokens, its padding left out
            part = self._run(input_ids[rows][:, columns], attention_mask[rows][:, columns])
            if out is None:
                width = (input_ids.shape[1],) if self.pooling == "tokens" else ()
                out = np.zeros((len(input_ids), *width, part.shape[-1]), dtype=part.dtype)
            if self.pooling == "tokens":
                out[np.ix_(rows, columns)] = part
            else:
                out[rows] = part
        return out

    def _run(self, input_ids: np.ndarray, attention_mask: np.ndarray) -> np.ndarray:
        feeds = {"input_ids": input_ids, "attention_mask": attention_mask}
        return self.session.run([output_name(self.pooling)], feeds)[0]
