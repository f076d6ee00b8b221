"""The endpoint benchmark's runs: workdir -> index -> archive -> private TorchServe -> ab, once per profile cell.

Public: `prepare_workdir`, `run_cells`, `inductor_cache`, `MODEL`. Each cell's model yaml is archived by
ragserve_ops.server's prepare_rag_archive (model_archive.py) and served by a private TorchServe on ports
28080-28084 (worker sockets 29080+) with the cell's worker environment; warm-up requests, then the measured
ab run while the workers' RSS is sampled; then the server stops. A cell returns one results.csv row (a dict;
`error` set when it failed). Files: out/work (the workdir) and out/cells/<cell>/. No report writing here.
"""

from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from benchlib import apache_bench
from benchlib.endpoint_profile import ALLOCATORS, Cell, Profile, cell_yaml, repo_path
from benchlib.model_archive import archive_rag, stage_inputs
from benchlib.private_server import BenchServer
from benchlib.ts_metrics import log_offsets, server_metrics, slowest_handler_ms
from ragserve.config import Config
from ragserve_ops.client import fresh_key

MODEL = "rag"
WARMUP_LIMIT_S = 30  # warm-up ends after warmup_requests or this many seconds
ALLOCATOR_PACKAGES = {"jemalloc": "libjemalloc2", "tcmalloc": "libtcmalloc-minimal4"}


@dataclass
class CellServer(BenchServer):
    """The private TorchServe of one cell: the cell's worker environment, and a wait for warm-up leftovers."""

    extra_env: dict[str, str] = field(default_factory=dict)
    drop_env: tuple[str, ...] = ()

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env.items() if k not in self.drop_env}
        return {**env, **self.extra_env}

    def pending(self) -> int:
        return sum(entry.get("jobQueueStatus", {}).get("pendingRequests", 0) for entry in self.describe(MODEL))

    def drain(self, settle_s: float, timeout_s: float = 300) -> None:
        """Wait until no request is queued and no handler call has ended for settle_s (warm-up leftovers)."""
        metrics = self.log_dir / "model_metrics.log"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            idle = time.time() - metrics.stat().st_mtime if metrics.exists() else settle_s
            if idle >= settle_s and self.pending() == 0:
                return
            time.sleep(0.5)


class RssSampler(threading.Thread):
    """Samples the TorchServe workers' RSS until stopped: peak of one worker and of all together."""

    def __init__(self, server: BenchServer, every_s: float = 0.25) -> None:
        super().__init__(daemon=True)
        self.server, self.every_s = server, every_s
        self.peak_worker = self.peak_total = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        while not self._stop_event.is_set():
            rss = [self._rss(proc) for proc in self.server.workers()]
            self.peak_worker = max([self.peak_worker, *rss])
            self.peak_total = max(self.peak_total, sum(rss))
            self._stop_event.wait(self.every_s)

    def stop(self) -> None:
        self._stop_event.set()
        self.join()

    @staticmethod
    def _rss(proc: psutil.Process) -> int:
        try:
            return proc.memory_info().rss
        except psutil.Error:
            return 0


def inductor_cache(base: dict[str, Any]) -> str | None:
    """The yaml's compile.cache_dir (its default from ragserve.config), expanded; None when disabled."""
    cache = Config.from_mapping(base.get("handler"), ".").compile.cache_dir
    return str(Path(cache).expanduser()) if cache else None


def cell_env(cell: Cell, base: dict[str, Any]) -> tuple[dict[str, str], tuple[str, ...]]:
    """Worker environment: OMP_NUM_THREADS (unset for default threads), Graviton settings on aarch64, and
    TORCHINDUCTOR_CACHE_DIR = the yaml's compile.cache_dir unless already set: inside a worker,
    transformers' from_pretrained sets it to $TMPDIR/torchinductor_<user> before the handler's setdefault."""
    extra: dict[str, str] = {}  # the Graviton settings come with TorchServe.env (platform_env)
    cache = inductor_cache(base)
    if cache and "TORCHINDUCTOR_CACHE_DIR" not in os.environ:
        extra["TORCHINDUCTOR_CACHE_DIR"] = cache
    if cell.allocator != "default":  # the frontend (java) inherits it too; the workers are what it is for
        extra["LD_PRELOAD"] = allocator_library(cell.allocator)
    if cell.threads is None:
        return extra, ("OMP_NUM_THREADS",)
    return {**extra, "OMP_NUM_THREADS": str(cell.threads)}, ()


def allocator_library(allocator: str) -> str:
    """The path of the allocator's shared library; RuntimeError naming the package when it is missing."""
    name = ALLOCATORS[allocator]
    for folder in (f"/usr/lib/{platform.machine()}-linux-gnu", "/usr/lib64", "/usr/lib"):
        if (Path(folder) / name).is_file():
            return str(Path(folder) / name)
    package = ALLOCATOR_PACKAGES[allocator]
    raise RuntimeError(f"{name} not found: apt-get install {package} (scripts/install_system.sh installs it)")


def prepare_workdir(profile: Profile, out: Path) -> tuple[Path, dict[str, Any]]:
    """out/work with the base yaml's inputs and its index built up front; returns (workdir, base yaml)."""
    workdir = out / "work"
    base = yaml.safe_load(profile.base_config.read_text()) or {}
    stage_inputs(base, workdir)
    print(f"building the index for {repo_path(profile.base_config)} (once for all cells)...", flush=True)
    log = workdir / "index.log"
    try:
        archive_rag(workdir, base, log)
    except RuntimeError as err:
        raise SystemExit(str(err)) from err
    shipped = re.search(r"(?:archived index version|live version) (\w+)", log.read_text(errors="replace"))
    print(f"index {shipped.group(1) if shipped else '(version not reported)'}", flush=True)
    return workdir, base


def run_cells(profile: Profile, base: dict[str, Any], workdir: Path, out: Path) -> list[dict[str, Any]]:
    """Every cell of the profile in turn, a progress line printed after each; their rows."""
    cells, rows = profile.cells(), []
    for i, cell in enumerate(cells, 1):
        rows.append(run_cell(cell, profile, base, workdir, out))
        print(progress(i, len(cells), rows[-1]), flush=True)
    shutil.rmtree(workdir / "model_store", ignore_errors=True)  # hard links to the weights: nothing to keep
    return rows


def run_cell(cell: Cell, profile: Profile, base: dict[str, Any], workdir: Path, out: Path) -> dict[str, Any]:
    """Archive (the index refreshed first: a no-op after prepare_workdir), start, warm up, measure, stop."""
    cell_dir = out / "cells" / cell.name
    shutil.rmtree(cell_dir, ignore_errors=True)
    cell_dir.mkdir(parents=True)
    doc = cell_yaml(base, cell)
    (cell_dir / "model.yaml").write_text(f"# {cell}\n" + yaml.safe_dump(doc, sort_keys=False))
    row: dict[str, Any] = {**asdict(cell), "cell": cell.name, "requests": profile.requests}
    row.update(concurrency=profile.concurrency, max_batch_delay_ms=cell.max_batch_delay, error="", note="")
    row["threads"] = cell.threads or "default"
    try:
        extra, drop = cell_env(cell, base)
    except RuntimeError as err:
        row["error"] = str(err)
        return row
    server = CellServer(workdir, extra_env=extra, drop_env=drop)  # a free port block (ragserve_ops/ports.py)
    shutil.rmtree(server.log_dir, ignore_errors=True)
    try:
        archive_rag(workdir, doc, cell_dir / "archive.log")
        row.update(measure(server, cell, profile, cell_dir))
    except (RuntimeError, subprocess.SubprocessError, OSError) as err:
        row["error"] = str(err).splitlines()[0][:300]
    finally:
        server.stop_and_wait()
        server.release()
        if server.log_dir.exists():
            shutil.move(str(server.log_dir), cell_dir / "logs")
    return row


def measure(server: CellServer, cell: Cell, profile: Profile, cell_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"start_s": server.start_workers(MODEL, cell.workers, profile.startup_timeout_s)}
    key = fresh_key(server.inference_url, server.keys)  # each cell's server is new: its key outlives the cell
    url = f"{server.inference_url}/predictions/{MODEL}"
    if profile.warmup_requests:
        warm_up = apache_bench.Load(
            profile.warmup_requests, min(profile.concurrency, profile.warmup_requests), WARMUP_LIMIT_S
        )
        apache_bench.run(url, profile.payload, key, warm_up)
        server.drain(settle_s=1 + 1.5 * slowest_handler_ms(server.log_dir) / 1000)  # a cut-off warm-up leaves a queue
    offsets = log_offsets(server.log_dir)
    row["load_1m"] = os.getloadavg()[0]
    sampler = RssSampler(server)
    sampler.start()
    try:
        load = apache_bench.Load(profile.requests, profile.concurrency, profile.time_limit_s)
        text = apache_bench.run(url, profile.payload, key, load)
    finally:
        sampler.stop()
    (cell_dir / "ab.txt").write_text(text)
    row.update(apache_bench.parse(text))
    row.update(server_metrics(server.log_dir, offsets))
    row.update(peak_worker_rss_mib=sampler.peak_worker / 2**20, peak_total_rss_mib=sampler.peak_total / 2**20)
    return row


def progress(i: int, total: int, row: dict[str, Any]) -> str:
    head = f"[{i}/{total}] {row['cell']:<22}"
    if row["error"]:
        return f"{head} FAILED: {row['error']}"
    return (
        f"{head} {row['rps']:8.2f} req/s ({row['complete']}/{row['requests']} done)  "
        f"mean {row['mean_ms']:.0f} ms  p50 {row['p50_ms']:.0f}  "
        f"p99 {row['p99_ms']:.0f}  failed {row['failed']:.0f}  non-2xx {row['non_2xx']:.0f}  "
        f"handler {row['handler_mean_ms']:.1f} ms x{row['avg_batch']:.1f}  "
        f"RSS {row['peak_worker_rss_mib']:.0f} MiB  start {row['start_s']:.0f} s  load {row['load_1m']:.1f}"
    )
