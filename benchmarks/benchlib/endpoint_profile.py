"""The endpoint benchmark's profile (benchmarks/profile*.yaml) read and checked into typed objects, and its cells.

Public: `Profile` (from_yaml, cells, quick), `Cell`, `cell_yaml`, `repo_path`, `MODES`, `ALLOCATORS`,
`SEED_DESIGN`. A profile names the matrix (modes x threads x workers x batch settings x allocators, or an
explicit cell list) and the load; a `Cell` is one TorchServe configuration, and `cell_yaml` the model yaml that
serves it. Unknown profile keys, modes and allocators are errors. No files written, no server here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
SEED_DESIGN = "seed-design"
# torch eager, torch.compile, embedding.backend onnxruntime, and with embedding.precision int8: ONNX Runtime's
# (per-tensor) and torchao's under torch.compile (per-token)
MODES = ("eager", "compile", "onnxruntime", "onnxruntime-int8", "compile-int8")
DEFAULT_BATCH_DELAY_MS = 10  # a cell with another maxBatchDelay says it in its name ("-b8d5")
# Allocators a cell may preload into the workers (LD_PRELOAD), by the Debian/Ubuntu library name.
ALLOCATORS = {"default": None, "jemalloc": "libjemalloc.so.2", "tcmalloc": "libtcmalloc_minimal.so.4"}


@dataclass(frozen=True)
class Cell:
    """One TorchServe configuration to measure."""

    name: str
    mode: str  # eager | compile | onnxruntime | onnxruntime-int8 | compile-int8
    threads: int | None  # OMP_NUM_THREADS per worker; None: unset (torch's default)
    workers: int
    batch_size: int
    max_batch_delay: int  # ms
    allocator: str = "default"  # a key of ALLOCATORS


@dataclass(frozen=True)
class Profile:
    """The matrix and the load: see benchmarks/profile.yaml."""

    base_config: Path
    payload: Path
    modes: list[str]
    threads: list[int | str]
    workers: list[int | str]
    batches: list[dict[str, int]]
    allocators: list[str] = field(default_factory=lambda: ["default"])
    # Instead of the product above: these cells only, each {mode, threads, workers, batchSize,
    # maxBatchDelay, allocator} (missing keys: the first value of the lists above).
    cell_list: list[dict[str, Any]] = field(default_factory=list)
    requests: int = 1000
    concurrency: int = 24
    warmup_requests: int = 50
    time_limit_s: int = 90  # ab -t: a measured run ends after -n requests or this many seconds
    seed_design: bool = True
    startup_timeout_s: float = 900
    source: str = ""

    @classmethod
    def from_yaml(cls, path: Path) -> Profile:
        doc = yaml.safe_load(path.read_text()) or {}
        unknown = set(doc) - {f for f in cls.__dataclass_fields__ if f != "source"}
        if unknown:
            raise SystemExit(f"{path}: unknown key(s) {sorted(unknown)}")
        doc["base_config"] = ROOT / doc.get("base_config", "configs/rag-docs.yaml")
        doc["payload"] = ROOT / doc.get("payload", "benchmarks/payload.txt")
        return cls(**doc, source=repo_path(path))

    def quick(self) -> Profile:
        """--quick: one eager cell, one worker, the project's batching, 50 requests."""
        return Profile(
            self.base_config, self.payload, ["eager"], [1], [1], [{"batchSize": 8, "maxBatchDelay": 10}],
            requests=50, concurrency=4, warmup_requests=5, time_limit_s=60, seed_design=False,
            startup_timeout_s=self.startup_timeout_s, source=f"{self.source} --quick",
        )  # fmt: skip

    def cells(self) -> list[Cell]:
        cells = [_seed_cell()] if self.seed_design else []
        if self.cell_list:
            return cells + [self._listed_cell(entry) for entry in self.cell_list]
        for mode in self.modes:
            for threads in self.threads:
                for workers in self.workers:
                    for batch in self.batches:
                        for allocator in self.allocators:
                            cells.append(_matrix_cell(mode, _count(threads), _count(workers), batch, allocator))
        return cells

    def _listed_cell(self, entry: dict[str, Any]) -> Cell:
        batch = {k: entry.get(k, self.batches[0].get(k, 0)) for k in ("batchSize", "maxBatchDelay")}
        return _matrix_cell(
            entry.get("mode", self.modes[0]),
            _count(entry.get("threads", self.threads[0])),
            _count(entry.get("workers", self.workers[0])),
            batch,
            entry.get("allocator", self.allocators[0]),
        )


def repo_path(path: Path) -> str:
    """path relative to the repository when it lies inside it (as reports name files)."""
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def _count(value: int | str) -> int:
    return (os.cpu_count() or 1) if value == "all" else int(value)


def _seed_cell() -> Cell:
    # The demo's workers took torch's default, every core each; ours share the cores out unless
    # OMP_NUM_THREADS is set (serving.worker_threads), so the seed cell sets it to the core count.
    cores = os.cpu_count() or 1
    return Cell(SEED_DESIGN, "eager", cores, cores, 1, 0)


def _matrix_cell(mode: str, threads: int, workers: int, batch: dict[str, int], allocator: str = "default") -> Cell:
    if mode not in MODES:
        raise SystemExit(f"mode {mode!r}: use one of {MODES}")
    if allocator not in ALLOCATORS:
        raise SystemExit(f"allocator {allocator!r}: use one of {list(ALLOCATORS)}")
    size, delay = int(batch["batchSize"]), int(batch.get("maxBatchDelay", 0))
    suffix = f"d{delay}" if delay != DEFAULT_BATCH_DELAY_MS else ""
    suffix += "" if allocator == "default" else f"-{allocator}"
    return Cell(f"{mode}-t{threads}-w{workers}-b{size}{suffix}", mode, threads, workers, size, delay, allocator)


def cell_yaml(base: dict[str, Any], cell: Cell) -> dict[str, Any]:
    """The base model yaml with the cell's frontend keys, compile switch and embedding backend."""
    doc = {**base, "minWorkers": cell.workers, "maxWorkers": cell.workers}
    doc.update(batchSize=cell.batch_size, maxBatchDelay=cell.max_batch_delay)
    handler = dict(doc.get("handler") or {})
    backend = "onnxruntime" if cell.mode.startswith("onnxruntime") else "torch"  # never the yaml's `auto`
    precision = "int8" if cell.mode.endswith("-int8") else "fp32"  # int8: its own index line, built by the archive step
    handler["embedding"] = {**(handler.get("embedding") or {}), "backend": backend, "precision": precision}
    enabled = cell.mode.startswith("compile")
    if isinstance(handler.get("compile"), bool):  # the demo's flat `compile: true|false`
        handler["compile"] = enabled
    else:
        handler["compile"] = {**(handler.get("compile") or {}), "enabled": enabled}
    doc["handler"] = handler
    return doc
