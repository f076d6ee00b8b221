"""The sections both endpoints share: `compile` (torch.compile) and `runtime` (device and threads)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ragserve.config.parsing import _check

DTYPES = ("float32", "bfloat16", "float16")


@dataclass(frozen=True)
class CompileConfig:
    """torch.compile, for the encoder and the LLM decode alike (compilation.py)."""

    enabled: bool | None = None  # None: the measured default (encoder: on; LLM decode: on for CUDA, off on CPU)
    backend: str = "inductor"  # torch.compile backend
    mode: str | None = None  # None: the default mode ("reduce-overhead", i.e. CUDA graphs, for the LLM on CUDA)
    options: dict[str, Any] | None = None  # Inductor options, exclusive with mode; None: {"freezing": true} (encoder)
    cache_dir: str | None = "~/.cache/ragserve/inductor"  # persistent Inductor cache, shared by workers and restarts

    def __post_init__(self) -> None:
        _check(not (self.mode and self.options), "compile.mode and compile.options are exclusive")

    def on(self, default: bool) -> bool:
        """Whether to compile, given the caller's default for `enabled: null`."""
        return default if self.enabled is None else self.enabled


@dataclass(frozen=True)
class RuntimeConfig:
    """Where a worker computes and with how many threads; applied once at start (runtime.py)."""

    device: str = "auto"  # "auto": the GPU TorchServe assigns, if any, else the CPU; "cpu": CPU even on a GPU host
    threads: int | None = None  # torch and ONNX Runtime threads; None: OMP_NUM_THREADS, else cores / minWorkers
    search_threads: int = 1  # RAG: FAISS and numpy BLAS threads per worker (0: every core)

    def __post_init__(self) -> None:
        _check(self.device in ("auto", "cpu"), "runtime.device must be 'auto' or 'cpu'")
        _check(self.threads is None or self.threads > 0, "runtime.threads must be > 0 (or null)")
        _check(self.search_threads >= 0, "runtime.search_threads must be >= 0")
