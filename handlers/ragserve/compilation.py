"""torch.compile policy and warm-up; the only module that touches torch.compile or dynamo.

Public names: compile_module, decode_compile_config, warm_up, compiled_graph_count.
Encoder shape policy: `dynamic=True`, so one graph serves every sequence length and batch size >= 2;
dynamo specialises size-1 dimensions, so batch size 1 gets a second graph. warm_up compiles both
up front, and later requests trigger no compilation (tests/test_embeddings.py checks it).
LLM decode policy: `dynamic=False`, one static graph per (batch bucket, KV cache bucket) that the
generation module declares and warms; transformers' generate compiles the decode step itself.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ragserve.config import CompileConfig

logger = logging.getLogger(__name__)


ENCODER_OPTIONS = {"freezing": True}  # compile.options when null and no mode is set: weights folded as constants


def compile_module(module: torch.nn.Module, cfg: CompileConfig) -> None:
    """Compile module in place (state_dict keys stay those of the eager model)."""
    _use_cache_dir(cfg.cache_dir)
    options = cfg.options if cfg.options is not None else (None if cfg.mode else ENCODER_OPTIONS)
    module.compile(backend=cfg.backend, mode=cfg.mode, options=options or None, dynamic=True)


def decode_compile_config(mode: str | None, graphs: int, cache_dir: str | None) -> Any:
    """transformers' CompileConfig for the static-cache decode step: fullgraph, one static graph per bucket.

    The recompile limit is raised to hold these buckets (allow_recompiles).
    """
    from transformers import CompileConfig as GenerateCompileConfig

    _use_cache_dir(cache_dir)
    allow_recompiles(graphs)
    config = GenerateCompileConfig(fullgraph=True, dynamic=False, mode=mode or "default")
    # transformers compiles only on accelerators unless told; the CPU path is what the tests exercise.
    config._compile_all_devices = True
    return config


def allow_recompiles(graphs: int) -> None:
    """Raise dynamo's recompile limit (per code object, for the whole process) to hold `graphs` more graphs on top of
    every graph compiled so far. Past the limit dynamo stops compiling that code for good: the next shape runs
    eager (silently), or fails with fullgraph. A worker holds one model, but a benchmark or a test process compiles
    the same forward for several (compiled, then int8 weights; the in-flight steps)."""
    needed = compiled_graph_count() + graphs + 8  # 8: dynamo's default, for graphs outside the declared ones
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, needed)


def _use_cache_dir(cache_dir: str | None) -> None:
    if cache_dir:
        cache_dir = os.path.expanduser(cache_dir)  # a config built in code may still hold "~/..."
        # Inductor reads this at compile time; a shared persistent cache lets a restarted or
        # second worker reuse compiled kernels instead of paying the 1-2 minute cold compile.
        # Set, not setdefault: importing sentence_transformers fills it with /tmp/torchinductor_<user>.
        os.makedirs(cache_dir, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir


def warm_up(fn: Callable[[Any], Any], examples: Sequence[Any]) -> list[float]:
    """Run fn once per example under inference mode; return the seconds each took. Each step is logged as it
    starts: a cold compile (torchao's int8 most of all) takes minutes per shape."""
    timings = []
    for step, example in enumerate(examples, 1):
        logger.info("warm-up %d/%d (%.0f s so far): a cold cache compiles", step, len(examples), sum(timings))
        start = time.perf_counter()
        with torch.inference_mode():
            fn(example)
        timings.append(time.perf_counter() - start)
    logger.info("warm-up: %s s, %d compiled graphs", [round(t, 2) for t in timings], compiled_graph_count())
    return timings


def compiled_graph_count() -> int:
    """Graphs dynamo has compiled in this process so far (a new one means a recompile)."""
    from torch._dynamo.utils import counters

    return int(counters["stats"]["unique_graphs"])
