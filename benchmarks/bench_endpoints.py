#!/usr/bin/env python3
"""Throughput of the RAG endpoint through a real TorchServe under Apache Bench: `make benchmark`'s engine.

  .venv/bin/python benchmarks/bench_endpoints.py                   # benchmarks/profile.yaml (~15 min, 2 cores)
  .venv/bin/python benchmarks/bench_endpoints.py --quick           # one eager cell, 50 requests (~2 min)
  .venv/bin/python benchmarks/bench_endpoints.py --profile benchmarks/profile-seed.yaml   # the demo's, 16 cores

Reproduces the original demo's table (OMP_NUM_THREADS x eager/compile, requests/s from
`ab -k -n N -c C`) for this project. The profile names the matrix: modes x threads x workers x
batch settings, plus a `seed-design` cell (the demo's configuration: eager, batch size 1, one worker
per core, default threads) that the best cell is reported against.

Per cell: a copy of the base model yaml with minWorkers/maxWorkers/batchSize/maxBatchDelay and
handler.compile.enabled changed is archived into a private model store and served by a private
TorchServe on ports 28080-28082 (worker sockets /tmp/.ts.sock.29000+). The index is built once up
front (its key does not depend on the cell settings; each archive step checks it ships that index).
Warm-up requests, then the measured ab run, sampling the workers' RSS; then TorchServe stops.

TorchServe's own latency comes from the cell's logs: 0.12.0 runs with metrics_mode=log, where the
metrics endpoint (:28082/metrics) answers an empty body, so the numbers are read from
logs/model_metrics.log (HandlerTime per handler call = per batch; RAGEmbedTime/RAGSearchTime, which
TorchServe only keeps with model_metrics_auto_detect=true, set in the private config) and
logs/ts_metrics.log (ts_inference_latency_microseconds, ts_queue_latency_microseconds per request).

Output (default benchmarks/results/<date>-<hostname>/): report.md, results.csv, throughput.png,
and cells/<cell>/ with the cell yaml, ab's output and TorchServe's logs. Needs `ab`
(apt-get install -y apache2-utils). No timing is asserted.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.util
import json
import os
import platform
import re
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent

from sysinfo import cpu_model, package_version  # noqa: E402

from ragserve.ops.client import call, count_ready, failure_reason, fresh_key, is_running  # noqa: E402
from ragserve.ops.server import TorchServe, platform_env  # noqa: E402

PORT = 28080  # inference; management 28081, metrics 28082, gRPC 28083-28084
MODEL = "rag"
SEED_DESIGN = "seed-design"
MODES = ("eager", "compile", "onnxruntime")  # torch eager, torch.compile, embedding.backend onnxruntime
DEFAULT_BATCH_DELAY_MS = 10  # a cell with another maxBatchDelay says it in its name ("-b8d5")
# Allocators a cell may preload into the workers (LD_PRELOAD), by the Debian/Ubuntu library name.
ALLOCATORS = {"default": None, "jemalloc": "libjemalloc.so.2", "tcmalloc": "libtcmalloc_minimal.so.4"}
ALLOCATOR_PACKAGES = {"jemalloc": "libjemalloc2", "tcmalloc": "libtcmalloc-minimal4"}
HANDLER_IDS = re.compile(r"HandlerTime\.\w+:[\d.]+\|.*?requestID:(\S+?),timestamp")  # one batch's ids
WARMUP_LIMIT_S = 30
DEFAULT_INDUCTOR_CACHE = "~/.cache/ragserve/inductor"  # warm-up ends after warmup_requests or this many seconds
CSV_FIELDS = [
    "cell", "mode", "allocator", "threads", "workers", "batch_size", "max_batch_delay_ms", "requests", "concurrency",
    "complete", "failed", "non_2xx", "rps", "mean_ms", "p50_ms", "p90_ms", "p99_ms",
    "handler_mean_ms", "handler_p50_ms", "handler_p99_ms", "handler_calls", "avg_batch",
    "embed_mean_ms", "ts_inference_mean_ms", "ts_queue_mean_ms",
    "peak_worker_rss_mib", "peak_total_rss_mib", "start_s", "load_1m", "error", "note",
]  # fmt: skip


@dataclass(frozen=True)
class Cell:
    """One TorchServe configuration to measure."""

    name: str
    mode: str  # eager | compile | onnxruntime
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
        return cls(**doc, source=_repo_path(path))

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


def _repo_path(path: Path) -> str:
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


def quick_profile(base: Profile) -> Profile:
    """--quick: one eager cell, one worker, the project's batching, 50 requests."""
    return Profile(
        base.base_config, base.payload, ["eager"], [1], [1], [{"batchSize": 8, "maxBatchDelay": 10}],
        requests=50, concurrency=4, warmup_requests=5, time_limit_s=60, seed_design=False,
        startup_timeout_s=base.startup_timeout_s, source=f"{base.source} --quick",
    )  # fmt: skip


# --- model archive -----------------------------------------------------------------------------


def cell_yaml(base: dict[str, Any], cell: Cell) -> dict[str, Any]:
    """The base model yaml with the cell's frontend keys, compile switch and embedding backend."""
    doc = {**base, "minWorkers": cell.workers, "maxWorkers": cell.workers}
    doc.update(batchSize=cell.batch_size, maxBatchDelay=cell.max_batch_delay)
    handler = dict(doc.get("handler") or {})
    backend = "onnxruntime" if cell.mode == "onnxruntime" else "torch"  # never the yaml's `auto`
    handler["embedding"] = {**(handler.get("embedding") or {}), "backend": backend}
    enabled = cell.mode == "compile"
    if isinstance(handler.get("compile"), bool):  # the demo's flat `compile: true|false`
        handler["compile"] = enabled
    else:
        handler["compile"] = {**(handler.get("compile") or {}), "enabled": enabled}
    doc["handler"] = handler
    return doc


def link_inputs(base: dict[str, Any], workdir: Path) -> None:
    """Make the base yaml's relative local paths (corpus, model) resolve under workdir too."""
    handler = base.get("handler") or {}
    paths = [
        (handler.get("corpus") or {}).get("source")
        or handler.get("url_to_scrape")
        or handler.get("source")
        or "corpus/ragserve-docs",
        (handler.get("embedding") or {}).get("model_path") or handler.get("model_path") or "models",
    ]
    for path in paths:
        if "://" in str(path) or Path(str(path)).expanduser().is_absolute():
            continue
        top = Path(str(path)).parts[0]
        link = workdir / top
        if not link.exists() and (ROOT / top).exists():
            link.symlink_to(ROOT / top)


def build_index(config: Path, workdir: Path) -> str:
    """scripts/build_index.py into workdir/index; returns the live version id."""
    cmd = [sys.executable, str(ROOT / "scripts/build_index.py"), "--config", str(config), "--root", str(workdir)]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"build_index failed:\n{done.stderr[-3000:]}")
    return Path(done.stdout.strip().splitlines()[-1]).name


def archive(config: Path, workdir: Path) -> str | None:
    """scripts/archive.py into workdir/model_store/rag; returns the index version it ships (or links)."""
    shutil.rmtree(workdir / "model_store" / MODEL, ignore_errors=True)
    cmd = [sys.executable, str(ROOT / "scripts/archive.py"), "--config", str(config), "--name", MODEL]
    cmd += ["--root", str(workdir), "--store", str(workdir / "model_store")]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"archive failed:\n{done.stderr[-3000:]}")
    shipped = re.search(r"(?:archived index version|live version) (\w+)", done.stdout)
    return shipped.group(1) if shipped else None


def archive_with_index(config: Path, workdir: Path, key: str) -> str:
    """Archive; if the archive does not ship the prebuilt version (the cell's config is another line), build it."""
    shipped = archive(config, workdir)
    if shipped != key:
        key = build_index(config, workdir)
        shipped = archive(config, workdir)
    if shipped != key:
        raise RuntimeError(f"the archive does not ship index {key} (shipped: {shipped})")
    return key


# --- TorchServe --------------------------------------------------------------------------------


@dataclass
class BenchServe(TorchServe):
    """The private TorchServe, with per-cell worker environment and two extra properties."""

    extra_env: dict[str, str] = field(default_factory=dict)
    drop_env: tuple[str, ...] = ()
    java: psutil.Process | None = None  # the frontend this object started (only it and its workers get killed)

    @property
    def env(self) -> dict[str, str]:
        env = {k: v for k, v in super().env.items() if k not in self.drop_env}
        return {**env, **self.extra_env}

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    def start_all(self, workers: int, timeout_s: float) -> float:
        """Start TorchServe with MODEL and wait until `workers` workers are READY; returns seconds."""
        start = time.monotonic()
        self.launch([MODEL])
        self.java = self._started_java(start)
        while self.ready_count() < workers:
            self._check_alive(start, timeout_s)
            time.sleep(1)
        return time.monotonic() - start

    def describe(self) -> list[dict[str, Any]]:
        """The management API's model description ([] while the server is starting)."""
        try:
            status, _, text = call(
                f"{self.management_url}/models/{MODEL}", keys=self.keys, kind="management", timeout_s=5
            )
        except (SystemExit, OSError):
            return []  # still starting: no key file or no listener yet
        return json.loads(text) if status == 200 else []

    def ready_count(self) -> int:
        return count_ready(self.describe())

    def pending(self) -> int:
        return sum(entry.get("jobQueueStatus", {}).get("pendingRequests", 0) for entry in self.describe())

    def drain(self, settle_s: float, timeout_s: float = 300) -> None:
        """Wait until no request is queued and no handler call has ended for settle_s (warm-up leftovers)."""
        metrics = self.log_dir / "model_metrics.log"
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            idle = time.time() - metrics.stat().st_mtime if metrics.exists() else settle_s
            if idle >= settle_s and self.pending() == 0:
                return
            time.sleep(0.5)

    def _check_alive(self, start: float, timeout_s: float) -> None:
        if self.java is not None and not is_running(self.java.pid):
            raise RuntimeError(f"TorchServe exited while starting: {failure_reason(self.log_dir)}")
        log = self.log_dir / "ts_log.log"
        if log.exists() and "Backend worker process died" in log.read_text(errors="replace"):
            raise RuntimeError(f"a worker died while starting: see {self.log_dir / 'model_log.log'}")
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(f"workers not ready after {timeout_s:.0f} s: see {self.log_dir}")

    def _started_java(self, since: float) -> psutil.Process | None:
        """The java process named by this workdir's pid file, if it was started after `since`."""
        try:
            proc = psutil.Process(int((self.workdir / "tmp" / ".model_server.pid").read_text().strip()))
            born = proc.create_time() - (time.time() - time.monotonic())
        except (OSError, ValueError, psutil.Error):
            return None
        return proc if born >= since - 5 else None

    def workers(self) -> list[psutil.Process]:
        try:
            return self.java.children() if self.java else []
        except psutil.Error:
            return []

    def stop_and_wait(self, timeout_s: float = 60) -> None:
        """`torchserve --stop` returns before the server exits: wait for java and its workers, kill leftovers."""
        procs = self.workers() + ([self.java] if self.java else [])
        self.stop()
        _, alive = psutil.wait_procs(procs, timeout=timeout_s)
        for proc in alive:
            proc.kill()
        psutil.wait_procs(alive, timeout=10)


class RssSampler(threading.Thread):
    """Samples the TorchServe workers' RSS until stopped: peak of one worker and of all together."""

    def __init__(self, server: BenchServe, every_s: float = 0.25) -> None:
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


# --- Apache Bench and the logs -----------------------------------------------------------------


def ab_command(profile: Profile, n: int, c: int, key: str, time_limit_s: int) -> list[str]:
    """-k (keep-alive) is required: without it ab stalls against TorchServe. -t goes before -n (-t implies -n 50000)."""
    load = ["-k", "-s", "120", "-t", str(time_limit_s), "-n", str(n), "-c", str(c)]
    body = ["-p", str(profile.payload), "-T", "text/plain", "-H", f"Authorization: Bearer {key}"]
    return ["ab", *load, *body, f"http://127.0.0.1:{PORT}/predictions/{MODEL}"]


def run_ab(profile: Profile, n: int, c: int, key: str, time_limit_s: int) -> str:
    done = subprocess.run(ab_command(profile, n, c, key, time_limit_s), capture_output=True, text=True)
    if done.returncode != 0 or "Requests per second" not in done.stdout:
        raise RuntimeError(f"ab failed (rc {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def parse_ab(text: str) -> dict[str, float | int]:
    """requests/s, mean latency, p50/p90/p99 (ab's percentage table), complete, failed and non-2xx counts.

    The mean is the Connection Times table's Total mean, not "Time per request" (concurrency x elapsed / done,
    which counts the requests still in flight when -t ends the run).
    """

    def number(pattern: str, default: float | None = None) -> float:
        found = re.search(pattern, text, re.M)
        if found:
            return float(found.group(1))
        if default is None:
            raise RuntimeError(f"no {pattern!r} in ab's output")
        return default

    percent = {int(p): float(ms) for p, ms in re.findall(r"^\s+(\d+)%\s+(\d+)", text, re.M)}
    return {
        "rps": number(r"^Requests per second:\s+([\d.]+)"),
        "mean_ms": number(r"^Total:\s+\d+\s+(\d+)"),  # Connection Times: over completed requests
        "p50_ms": percent.get(50, float("nan")),
        "p90_ms": percent.get(90, float("nan")),
        "p99_ms": percent.get(99, float("nan")),
        "complete": int(number(r"^Complete requests:\s+(\d+)")),
        "failed": int(number(r"^Failed requests:\s+(\d+)")),
        "non_2xx": int(number(r"^Non-2xx responses:\s+(\d+)", 0)),
    }


def log_offsets(log_dir: Path) -> dict[str, int]:
    return {name: _size(log_dir / name) for name in ("model_metrics.log", "ts_metrics.log")}


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


def _read_from(path: Path, offset: int) -> str:
    if not path.exists():
        return ""
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace")


def _values(text: str, metric: str) -> list[float]:
    return [float(v) for v in re.findall(rf"{metric}\.\w+:([\d.]+)\|", text)]


def server_metrics(log_dir: Path, offsets: dict[str, int]) -> dict[str, float]:
    """TorchServe's own timings for the measured run, from the lines its logs gained since offsets."""
    model = _read_from(log_dir / "model_metrics.log", offsets["model_metrics.log"])
    frontend = _read_from(log_dir / "ts_metrics.log", offsets["ts_metrics.log"])
    handler = _values(model, "HandlerTime")
    batches = [len(ids.split(",")) for ids in HANDLER_IDS.findall(model)]
    return {
        "handler_mean_ms": _mean(handler),
        "handler_p50_ms": _quantile(handler, 0.50),
        "handler_p99_ms": _quantile(handler, 0.99),
        "handler_calls": len(handler),
        "avg_batch": _mean(batches),
        "embed_mean_ms": _mean(_values(model, "RAGEmbedTime")),
        "ts_inference_mean_ms": _mean(_values(frontend, "ts_inference_latency_microseconds")) / 1000,
        "ts_queue_mean_ms": _mean(_values(frontend, "ts_queue_latency_microseconds")) / 1000,
    }


def _mean(values: list[float]) -> float:
    return statistics.fmean(values) if values else float("nan")


def _quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


# --- one cell ----------------------------------------------------------------------------------


def inductor_cache(base: dict[str, Any]) -> str | None:
    """The yaml's compile.cache_dir (default ~/.cache/ragserve/inductor), expanded; None when disabled."""
    section = (base.get("handler") or {}).get("compile")
    cache = section.get("cache_dir", DEFAULT_INDUCTOR_CACHE) if isinstance(section, dict) else DEFAULT_INDUCTOR_CACHE
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


def run_cell(cell: Cell, profile: Profile, base: dict[str, Any], workdir: Path, out: Path, key: str) -> dict:
    """Archive, start, warm up, measure, stop; returns the CSV row (with `error` set on failure)."""
    cell_dir = out / "cells" / cell.name
    shutil.rmtree(cell_dir, ignore_errors=True)
    cell_dir.mkdir(parents=True)
    config = cell_dir / "model.yaml"
    config.write_text(f"# {cell}\n" + yaml.safe_dump(cell_yaml(base, cell), sort_keys=False))
    row: dict[str, Any] = {**asdict(cell), "cell": cell.name, "requests": profile.requests}
    row.update(concurrency=profile.concurrency, max_batch_delay_ms=cell.max_batch_delay, error="", note="")
    row["threads"] = cell.threads or "default"
    try:
        extra, drop = cell_env(cell, base)
    except RuntimeError as err:
        row["error"] = str(err)
        return row
    server = BenchServe(workdir, port=PORT, extra_env=extra, drop_env=drop)
    shutil.rmtree(server.log_dir, ignore_errors=True)
    try:
        archive_with_index(config, workdir, key)
        row.update(measure(server, cell, profile, cell_dir))
    except (RuntimeError, subprocess.SubprocessError, OSError) as err:
        row["error"] = str(err).splitlines()[0][:300]
    finally:
        server.stop_and_wait()
        if server.log_dir.exists():
            shutil.move(str(server.log_dir), cell_dir / "logs")
    return row


def measure(server: BenchServe, cell: Cell, profile: Profile, cell_dir: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"start_s": server.start_all(cell.workers, profile.startup_timeout_s)}
    key = fresh_key(server.inference_url, server.keys)  # each cell's server is new: its key outlives the cell
    if profile.warmup_requests:
        concurrency = min(profile.concurrency, profile.warmup_requests)
        run_ab(profile, profile.warmup_requests, concurrency, key, WARMUP_LIMIT_S)
        slowest = max(_values(_read_from(server.log_dir / "model_metrics.log", 0), "HandlerTime"), default=0)
        server.drain(settle_s=1 + 1.5 * slowest / 1000)  # a cut-off warm-up leaves requests queued
    offsets = log_offsets(server.log_dir)
    row["load_1m"] = os.getloadavg()[0]
    sampler = RssSampler(server)
    sampler.start()
    try:
        text = run_ab(profile, profile.requests, profile.concurrency, key, profile.time_limit_s)
    finally:
        sampler.stop()
    (cell_dir / "ab.txt").write_text(text)
    row.update(parse_ab(text))
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


# --- report ------------------------------------------------------------------------------------


def machine() -> dict[str, str]:
    """CPU model, cores, memory, and the versions that matter."""
    return {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": f"{os.cpu_count()} logical, {psutil.cpu_count(logical=False)} physical",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
        "torch": package_version("torch"),
        "torchserve": package_version("torchserve"),
        "ab": _ab_version(),
    }


def _ab_version() -> str:
    text = subprocess.run(["ab", "-V"], capture_output=True, text=True).stdout
    found = re.search(r"Version (\S+)", text)
    return found.group(1).rstrip(",") if found else "unknown"


def write_csv(rows: list[dict[str, Any]], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows({k: _fmt(row.get(k, "")) for k in CSV_FIELDS} for row in rows)


def _fmt(value: Any, digits: int = 2) -> str:
    if isinstance(value, float):
        return "" if value != value else f"{value:.{digits}f}"  # NaN -> empty
    return str(value)


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        "| cell | mode | OMP threads | workers | batch / delay ms | req/s | done | mean ms | p50 | p90 | p99 "
        "| failed | non-2xx | handler ms mean / p99 | avg batch | embed ms | peak worker RSS MiB | start s | load |"
    )
    lines = [head, "|" + "---|" * head.count(" | ") + "---|"]
    for r in rows:
        if r["error"]:
            lines.append(f"| {r['cell']} | {r['mode']} | {r['threads']} | {r['workers']} | FAILED: {r['error']} |")
            continue
        lines.append(
            f"| {r['cell']} | {r['mode']} | {r['threads']} | {r['workers']} | {r['batch_size']} / "
            f"{r['max_batch_delay_ms']} | **{r['rps']:.2f}** | {r['complete']} | {r['mean_ms']:.1f} "
            f"| {r['p50_ms']:.0f} | {r['p90_ms']:.0f} | {r['p99_ms']:.0f} | {r['failed']:.0f} | {r['non_2xx']:.0f} "
            f"| {_fmt(r['handler_mean_ms'], 1)} / {_fmt(r['handler_p99_ms'], 1)} | {_fmt(r['avg_batch'], 1)} "
            f"| {_fmt(r['embed_mean_ms'], 1)} | {r['peak_worker_rss_mib']:.0f} | {r['start_s']:.0f} "
            f"| {r['load_1m']:.1f} |"
        )
    return "\n".join(lines)


def demo_table(rows: list[dict[str, Any]]) -> str:
    """The demo's layout: req/s per OMP_NUM_THREADS (rows) and mode (columns), per workers/batch setting."""
    ok = [r for r in rows if not r["error"] and r["cell"] != SEED_DESIGN]
    setting = lambda r: (r["workers"], r["batch_size"], r["max_batch_delay_ms"])  # noqa: E731
    parts = []
    for workers, size, delay in sorted({setting(r) for r in ok}):
        cells = {(r["threads"], r["mode"]): r["rps"] for r in ok if setting(r) == (workers, size, delay)}
        lines = [f"{workers} workers, batch {size} / {delay} ms | eager req/s | compile req/s", "---|---|---"]
        for threads in sorted({t for t, _ in cells}, key=str):
            eager, compiled = (_fmt(cells.get((threads, m), float("nan"))) or "-" for m in ("eager", "compile"))
            lines.append(f"OMP_NUM_THREADS={threads} | {eager} | {compiled}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def ratio_line(rows: list[dict[str, Any]]) -> str:
    ok = [r for r in rows if not r["error"]]
    seed = next((r for r in ok if r["cell"] == SEED_DESIGN), None)
    matrix = [r for r in ok if r["cell"] != SEED_DESIGN]
    if not seed or not matrix or not seed["rps"]:
        return "No ratio: this run has no successful `seed-design` cell and matrix cell to compare."
    best = max(matrix, key=lambda r: r["rps"])
    return (
        f"Best cell **{best['cell']}**: {best['rps']:.2f} req/s = **{best['rps'] / seed['rps']:.2f}x** "
        f"the seed design's {seed['rps']:.2f} req/s."
    )


def notes(rows: list[dict[str, Any]]) -> str:
    lines = [f"- {r['cell']}: {r['note']}" for r in rows if r.get("note")]
    return "\n".join(["", *lines, ""]) if lines else ""


def write_report(rows: list[dict[str, Any]], profile: Profile, info: dict[str, Any], out: Path) -> None:
    base = yaml.safe_load(profile.base_config.read_text()) or {}
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or inductor_cache(base) or "(unset)"
    graviton = (
        "applied to every cell (aarch64, configs/graviton.env): "
        + ", ".join(f"{k}={v}" for k, v in platform_env().items())
        if platform_env()
        else f"not applied ({platform.machine()}; configs/graviton.env is for aarch64 only)"
    )
    settings = {k: v for k, v in asdict(profile).items() if k not in ("source",)}
    settings.update(base_config=_repo_path(profile.base_config), payload=_repo_path(profile.payload))
    text = f"""# RAG endpoint throughput: {info["date"]} on {info["machine"]["host"]}

{ratio_line(rows)}

{demo_table(rows)}

All cells:

{table(rows)}
{notes(rows)}
![requests/s per cell](throughput.png)

## How it was measured

`ab -k -s 120 -t {profile.time_limit_s} -n {profile.requests} -c {profile.concurrency} -p payload.txt -T text/plain
-H "Authorization: Bearer <key>" http://127.0.0.1:{PORT}/predictions/{MODEL}` per cell, after
{profile.warmup_requests} warm-up requests, against a private TorchServe started for the cell
(`minWorkers = maxWorkers = workers`, the cell's `batchSize`/`maxBatchDelay` and `handler.compile.enabled`;
`OMP_NUM_THREADS` per worker, unset for `default`). `seed-design` is the original demo's configuration:
eager, batch size 1, one worker per core, default threads.

- req/s, mean, p50/p90/p99 (ms), failed, non-2xx: Apache Bench (`failed` counts length mismatches too).
  A run ends after {profile.requests} requests or {profile.time_limit_s} s (`-t`), whichever comes first: `done` is
  the number of completed requests, req/s = done / elapsed.
- handler ms: TorchServe's `HandlerTime` per handler call (one call serves one batch), from the cell's
  `logs/model_metrics.log`; avg batch = requests per handler call (its `requestID` list); embed ms: the handler's
  `RAGEmbedTime` (kept because the private config sets `model_metrics_auto_detect=true`). The frontend's
  `ts_inference_latency_microseconds`/`ts_queue_latency_microseconds` per request are in results.csv. TorchServe
  0.12.0 runs with `metrics_mode=log`: its metrics endpoint answers an empty body, so the logs are the source.
- peak worker RSS: psutil on the TorchServe java process's children, sampled every 0.25 s during the measured run
  (the sum over workers is in results.csv).
- start s: `torchserve --start` until every worker is READY (a compile cell with a cold Inductor cache pays the
  compile here). load: the 1-minute load average just before the measured run; above the core count, other
  processes were competing for the CPU and the numbers are low.
- Graviton settings: {graviton}.
- Inductor cache: the workers get `TORCHINDUCTOR_CACHE_DIR` = `{cache}` (the caller's, else the
  yaml's `compile.cache_dir`): without it the cache lands in `$TMPDIR/torchinductor_<user>`, because transformers'
  `from_pretrained` sets the variable before the handler's `setdefault`. Cached graphs differ per thread count
  (observed: a new OMP_NUM_THREADS value compiles cold), and even a warm start re-traces (dynamo) in every worker.

## Machine

{chr(10).join(f"- {k}: {v}" for k, v in info["machine"].items())}
- wall time: {info["wall_s"] / 60:.1f} min

## Profile

`{profile.source}`; payload: "{profile.payload.read_text().strip()}"

```yaml
{yaml.safe_dump(settings, sort_keys=False).strip()}
```
"""
    (out / "report.md").write_text(text)


def plot(rows: list[dict[str, Any]], path: Path) -> None:
    """The bar chart; skipped with a message (nothing else lost) when matplotlib is not installed."""
    if not has_matplotlib():
        print(f"matplotlib is not installed: {path.name} skipped (pip install -r benchmarks/requirements.txt)")
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r["error"]]
    fig, ax = plt.subplots(figsize=(max(6, 1.3 * len(ok)), 4))
    colors = ["tab:gray" if r["cell"] == SEED_DESIGN else "tab:blue" for r in ok]
    bars = ax.bar([r["cell"] for r in ok], [r["rps"] for r in ok], color=colors)
    ax.bar_label(bars, fmt="%.1f")
    ax.set_ylabel("requests/s")
    ax.set_title(f"RAG endpoint throughput ({socket.gethostname()}, ab -c {ok[0]['concurrency'] if ok else '?'})")
    ax.tick_params(axis="x", labelrotation=20)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# --- main --------------------------------------------------------------------------------------


def has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


def check_prerequisites() -> None:
    if shutil.which("ab") is None:
        raise SystemExit("`ab` (Apache Bench) is missing: apt-get update && apt-get install -y apache2-utils")
    if not has_matplotlib():  # said now, not after the run: results.csv and report.md are still written
        print(
            "note: matplotlib is missing: throughput.png will be skipped (pip install -r benchmarks/requirements.txt)"
        )
    with socket.socket() as s:
        if s.connect_ex(("127.0.0.1", PORT)) == 0:
            raise SystemExit(f"port {PORT} is in use: is a TorchServe from an earlier run still up?")


def prepare_workdir(profile: Profile, out: Path) -> tuple[Path, dict[str, Any], str]:
    """out/work with links to the inputs and the index built once; returns (workdir, base yaml, index key)."""
    workdir = out / "work"
    workdir.mkdir(parents=True, exist_ok=True)
    base = yaml.safe_load(profile.base_config.read_text()) or {}
    link_inputs(base, workdir)
    print(f"building the index for {_repo_path(profile.base_config)} (once for all cells)...", flush=True)
    try:
        key = build_index(profile.base_config, workdir)
    except RuntimeError as err:
        raise SystemExit(str(err)) from err
    print(f"index {key}", flush=True)
    return workdir, base, key


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--profile", type=Path, default=ROOT / "benchmarks" / "profile.yaml")
    parser.add_argument("--out", type=Path, help="output folder (default benchmarks/results/<date>-<hostname>/)")
    parser.add_argument("--quick", action="store_true", help="one tiny eager cell: check the set-up")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    check_prerequisites()
    profile = Profile.from_yaml(args.profile.resolve())
    profile = quick_profile(profile) if args.quick else profile
    today = datetime.date.today().isoformat()
    out = (args.out or ROOT / "benchmarks" / "results" / f"{today}-{socket.gethostname()}").resolve()
    started = time.monotonic()
    workdir, base, key = prepare_workdir(profile, out)
    cells = profile.cells()
    rows = []
    for i, cell in enumerate(cells, 1):
        rows.append(run_cell(cell, profile, base, workdir, out, key))
        print(progress(i, len(cells), rows[-1]), flush=True)
    shutil.rmtree(workdir / "model_store", ignore_errors=True)  # hard links to the weights: nothing to keep
    write_csv(rows, out / "results.csv")
    info = {"date": today, "machine": machine(), "wall_s": time.monotonic() - started}
    write_report(rows, profile, info, out)
    plot(rows, out / "throughput.png")  # last: the measured results are on disk whatever happens here
    print(f"{out / 'report.md'}  ({info['wall_s'] / 60:.1f} min)\n\n{ratio_line(rows)}")


if __name__ == "__main__":
    main()
