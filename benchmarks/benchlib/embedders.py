"""The embedders embed_bench.py compares, each built as a Variant: its embed function, set-up time and notes.

Public names: Variant, REFERENCE, build_variant, fx_cache_stats.
sentence-transformers (the reference), the project's Encoder eager or compiled, its ONNX Runtime backend in float32
or int8, and torch.ao's dynamic int8 over the Encoder's Linear layers.
"""

from __future__ import annotations

import dataclasses
import os
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ragserve.compilation import compiled_graph_count
from ragserve.config import CompileConfig, Config, EmbeddingConfig
from ragserve.embedding.encoder import Encoder
from ragserve.embedding.onnxrt import onnx_file

REFERENCE = "sentence-transformers"
Embed = Callable[[list[str]], np.ndarray]


@dataclass
class Variant:
    name: str
    embed: Embed
    setup_s: float  # constructor time: load, compile + warm-up, export...
    notes: list[str] = field(default_factory=list)


def build_sentence_transformers(emb: EmbeddingConfig) -> Variant:
    from sentence_transformers import SentenceTransformer

    start = time.perf_counter()
    model = SentenceTransformer(emb.model_path, device="cpu")

    def embed(texts: list[str]) -> np.ndarray:
        return model.encode(texts, normalize_embeddings=True, batch_size=emb.batch_size, show_progress_bar=False)

    note = f"max_seq_length {model.max_seq_length}"
    return Variant(REFERENCE, embed, time.perf_counter() - start, [note])


def build_ours(name: str, cfg: Config, compiled: bool) -> Variant:
    compile_cfg = cfg.compile if compiled else CompileConfig(enabled=False)
    graphs_before = compiled_graph_count()
    start = time.perf_counter()
    encoder = Encoder(cfg.embedding, compile_cfg)
    variant = Variant(name, encoder.embed, time.perf_counter() - start)
    if compiled:
        variant.notes.append(
            f"constructor {variant.setup_s:.1f} s, of which warm-up (compile) {encoder.warm_up_s:.1f} s; "
            f"{compiled_graph_count() - graphs_before} graphs compiled at warm-up; "
            f"Inductor cache {os.environ.get('TORCHINDUCTOR_CACHE_DIR')} ({fx_cache_stats()})"
        )
    return variant


def fx_cache_stats() -> str:
    """Inductor's FX graph cache hits/misses/bypasses so far: a warm cache shows hits."""
    from torch._dynamo.utils import counters

    stats = {key: counters["inductor"][f"fxgraph_cache_{key}"] for key in ("hit", "miss", "bypass")}
    return "FX graph cache " + ", ".join(f"{key} {value}" for key, value in stats.items())


def build_int8(cfg: Config) -> Variant:
    from torch.ao.quantization import quantize_dynamic

    start = time.perf_counter()
    encoder = Encoder(cfg.embedding, CompileConfig(enabled=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization is deprecated in favour of torchao
        encoder.backend.model.transformer = quantize_dynamic(
            encoder.backend.model.transformer, {torch.nn.Linear}, dtype=torch.qint8
        )
    note = f"torch.ao quantize_dynamic(Linear, qint8), engine {torch.backends.quantized.engine}"
    return Variant("int8-dynamic", encoder.embed, time.perf_counter() - start, [note])


def build_onnx(emb: EmbeddingConfig, precision: str = "fp32") -> Variant:
    """The project's `embedding.backend: onnxruntime` (ragserve/onnxrt.py), exported on first use; precision int8:
    `embedding.precision: int8` (ragserve/embedding/int8.py), quantized on first use."""
    import onnxruntime as ort

    onnx_emb = dataclasses.replace(emb, backend="onnxruntime", precision=precision)
    exported = onnx_file(onnx_emb).exists()
    start = time.perf_counter()
    encoder = Encoder(onnx_emb, CompileConfig(enabled=False))
    how = "export reused" if exported else f"exported and loaded in {time.perf_counter() - start:.1f} s"
    note = f"onnxruntime {ort.__version__}, CPUExecutionProvider, {how}: {onnx_file(onnx_emb).name}"
    name = "onnxruntime" if precision == "fp32" else f"onnxruntime-{precision}"
    return Variant(name, encoder.embed, time.perf_counter() - start, [note])


def build_variant(name: str, cfg: Config, threads: int) -> Variant:
    if name == REFERENCE:
        return build_sentence_transformers(cfg.embedding)
    if name in ("ours-eager", "ours-compiled"):
        return build_ours(name, cfg, compiled=name == "ours-compiled")
    if name == "onnxruntime":
        return build_onnx(cfg.embedding)
    if name == "onnxruntime-int8":
        return build_onnx(cfg.embedding, "int8")
    return build_int8(cfg)
