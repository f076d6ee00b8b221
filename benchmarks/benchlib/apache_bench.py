"""Apache Bench (`ab`) for the benchmarks: the command line, one run, and what its output says.

Public: `Load`, `command`, `run`, `parse`, `counts`, `version`, `require`. `parse` returns requests/s,
latencies in ms (mean, p50/p90/p99) and request counts of one finished run; `counts` only the counts,
0 where ab printed none (a run cut short). No server here: the caller starts one and passes its URL and key.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Load:
    """What one ab run sends: -n, -c, -t and -s."""

    requests: int
    concurrency: int
    time_limit_s: int | None = None  # -t: the run ends after `requests` or this many seconds
    timeout_s: int = 120  # -s: one response's limit


def require() -> None:
    if shutil.which("ab") is None:
        raise SystemExit("`ab` (Apache Bench) is missing: apt-get update && apt-get install -y apache2-utils")


def command(url: str, payload: Path, key: str, load: Load, content_type: str = "text/plain") -> list[str]:
    """-k (keep-alive) is required: without it ab stalls against TorchServe. -t goes before -n (-t implies -n 50000)."""
    limit = ["-t", str(load.time_limit_s)] if load.time_limit_s else []
    sizes = ["-k", "-s", str(load.timeout_s), *limit, "-n", str(load.requests), "-c", str(load.concurrency)]
    body = ["-p", str(payload), "-T", content_type, "-H", f"Authorization: Bearer {key}"]
    return ["ab", *sizes, *body, url]


def run(url: str, payload: Path, key: str, load: Load, content_type: str = "text/plain") -> str:
    """ab's output; RuntimeError when it failed or measured nothing."""
    done = subprocess.run(command(url, payload, key, load, content_type), capture_output=True, text=True)
    if done.returncode != 0 or "Requests per second" not in done.stdout:
        raise RuntimeError(f"ab failed (rc {done.returncode}): {done.stderr.strip()[-500:]}")
    return done.stdout


def _number(text: str, pattern: str, default: float | None = None) -> float:
    found = re.search(pattern, text, re.M)
    if found:
        return float(found.group(1))
    if default is None:
        raise RuntimeError(f"no {pattern!r} in ab's output")
    return default


def counts(text: str) -> dict[str, int]:
    """complete, failed (of which `length`: a body length unlike the first one's) and non-2xx; 0 when absent."""
    patterns = {
        "complete": r"^Complete requests:\s+(\d+)",
        "failed": r"^Failed requests:\s+(\d+)",
        "length": r"Length: (\d+)",
        "non_2xx": r"^Non-2xx responses:\s+(\d+)",
    }
    return {name: int(_number(text, pattern, 0)) for name, pattern in patterns.items()}


def parse(text: str) -> dict[str, float | int]:
    """requests/s, mean latency, p50/p90/p99 (ab's percentage table) and counts of a finished run.

    The mean is the Connection Times table's Total mean, not "Time per request" (concurrency x elapsed / done,
    which counts the requests still in flight when -t ends the run).
    """
    percent = {int(p): float(ms) for p, ms in re.findall(r"^\s+(\d+)%\s+(\d+)", text, re.M)}
    return {
        "rps": _number(text, r"^Requests per second:\s+([\d.]+)"),
        "mean_ms": _number(text, r"^Total:\s+\d+\s+(\d+)"),  # Connection Times: over completed requests
        "p50_ms": percent.get(50, float("nan")),
        "p90_ms": percent.get(90, float("nan")),
        "p99_ms": percent.get(99, float("nan")),
        "complete": int(_number(text, r"^Complete requests:\s+(\d+)")),
        "failed": int(_number(text, r"^Failed requests:\s+(\d+)")),
        "length": counts(text)["length"],
        "non_2xx": int(_number(text, r"^Non-2xx responses:\s+(\d+)", 0)),
    }


def version() -> str:
    text = subprocess.run(["ab", "-V"], capture_output=True, text=True).stdout
    found = re.search(r"Version (\S+)", text)
    return found.group(1).rstrip(",") if found else "unknown"
