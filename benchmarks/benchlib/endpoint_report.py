"""The endpoint benchmark's report: results.csv, report.md and throughput.png from the cells' rows.

Public: `write`, `ratio_line`, `has_matplotlib`, `CSV_FIELDS`. Rows are endpoint_runner's dicts (one per cell,
`error` set on failure); files go through report.Results, which appends the set-up section and writes setup.json.
The plot needs matplotlib (benchmarks/requirements.txt) and is skipped with a message without it. No measuring here.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import socket
from dataclasses import asdict
from pathlib import Path
from typing import Any

import yaml

from benchlib.endpoint_profile import SEED_DESIGN, Profile, repo_path
from benchlib.endpoint_runner import MODEL, inductor_cache
from benchlib.report import Results
from ragserve_ops.server import platform_env

CSV_FIELDS = [
    "cell", "mode", "allocator", "threads", "workers", "batch_size", "max_batch_delay_ms", "requests", "concurrency",
    "complete", "failed", "non_2xx", "rps", "mean_ms", "p50_ms", "p90_ms", "p99_ms",
    "handler_mean_ms", "handler_p50_ms", "handler_p99_ms", "handler_calls", "avg_batch",
    "embed_mean_ms", "ts_inference_mean_ms", "ts_queue_mean_ms",
    "peak_worker_rss_mib", "peak_total_rss_mib", "start_s", "load_1m", "error", "note",
]  # fmt: skip


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


def markdown(rows: list[dict[str, Any]], profile: Profile, results: Results) -> str:
    base = yaml.safe_load(profile.base_config.read_text()) or {}
    cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or inductor_cache(base) or "(unset)"
    graviton = (
        "applied to every cell (aarch64, configs/graviton.env): "
        + ", ".join(f"{k}={v}" for k, v in platform_env().items())
        if platform_env()
        else f"not applied ({platform.machine()}; configs/graviton.env is for aarch64 only)"
    )
    settings = {k: v for k, v in asdict(profile).items() if k not in ("source",)}
    settings.update(base_config=repo_path(profile.base_config), payload=repo_path(profile.payload))
    return f"""# RAG endpoint throughput: {results.setup["date"]} on {results.setup["host"]}

{ratio_line(rows)}

{demo_table(rows)}

All cells:

{table(rows)}
{notes(rows)}
![requests/s per cell](throughput.png)

## How it was measured

`ab -k -s 120 -t {profile.time_limit_s} -n {profile.requests} -c {profile.concurrency} -p payload.txt -T text/plain
-H "Authorization: Bearer <key>" http://127.0.0.1:<port>/predictions/{MODEL}` per cell, after
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

## Profile

`{profile.source}`; payload: "{profile.payload.read_text().strip()}"

```yaml
{yaml.safe_dump(settings, sort_keys=False).strip()}
```
"""


def has_matplotlib() -> bool:
    return importlib.util.find_spec("matplotlib") is not None


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


def write(rows: list[dict[str, Any]], profile: Profile, results: Results) -> Path:
    """results.csv, report.md (+ setup.json), then throughput.png last: the measured results are on disk first."""
    results.write_csv("results.csv", rows, CSV_FIELDS, digits=2)
    path = results.write_report(markdown(rows, profile, results))
    plot(rows, results.path("throughput.png"))
    return path
