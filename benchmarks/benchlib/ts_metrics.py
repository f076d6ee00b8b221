"""TorchServe's own timings for a measured run, read from the metric logs of its log folder.

Public: `log_offsets`, `server_metrics`, `slowest_handler_ms`. TorchServe 0.12.0 runs with metrics_mode=log: its
metrics endpoint answers an empty body, so logs/model_metrics.log (HandlerTime per handler call = per batch, with
its requestIDs; RAGEmbedTime, kept with model_metrics_auto_detect=true) and logs/ts_metrics.log
(ts_inference_latency_microseconds, ts_queue_latency_microseconds per request) are the source. Milliseconds out.
"""

from __future__ import annotations

import re
import statistics
from pathlib import Path

HANDLER_IDS = re.compile(r"HandlerTime\.\w+:[\d.]+\|.*?requestID:(\S+?),timestamp")  # one batch's ids
LOGS = ("model_metrics.log", "ts_metrics.log")


def log_offsets(log_dir: Path) -> dict[str, int]:
    """The metric logs' sizes now: server_metrics reads only what they gain after this."""
    return {name: _size(log_dir / name) for name in LOGS}


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


def slowest_handler_ms(log_dir: Path) -> float:
    """The longest handler call logged so far (0 when none)."""
    return max(_values(_read_from(log_dir / "model_metrics.log", 0), "HandlerTime"), default=0)


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
