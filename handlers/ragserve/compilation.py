"""torch.compile policy and warm-up; the only module that touches torch.compile or dynamo.

Public names: compile_module, warm_up, compiled_graph_count.
Shape policy: `dynamic=True`, so one graph serves every sequence length and batch size >= 2;
dynamo specialises size-1 dimensions, so batch size 1 gets a second graph. warm_up compiles both
up front, and later requests trigger no compilation (tests/test_embeddings.py checks it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .config import CompileConfig

logger = logging.getLogger(__name__)


def compile_module(module: torch.nn.Module, cfg: CompileConfig) -> None:
    """Compile module in place (state_dict keys stay those of the eager model)."""
    if cfg.cache_dir:
        # Inductor reads this at compile time; a shared persistent cache lets a restarted or
        # second worker reuse compiled kernels instead of paying the 1-2 minute cold compile.
        # Set, not setdefault: importing sentence_transformers fills it with /tmp/torchinductor_<user>.
        os.makedirs(cfg.cache_dir, exist_ok=True)
        os.environ["TORCHINDUCTOR_CACHE_DIR"] = cfg.cache_dir
    module.compile(backend=cfg.backend, mode=cfg.mode, options=cfg.options or None, dynamic=True)


def warm_up(fn: Callable[[Any], Any], examples: Sequence[Any]) -> list[float]:
    """Run fn once per example under inference mode; return the seconds each took."""
    timings = []
    for example in examples:
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
