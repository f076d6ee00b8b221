"""What the benchmark reports say about the machine: shared by bench_endpoints.py and embed_bench.py."""

from __future__ import annotations

import importlib.metadata
import platform
import re
import subprocess


def cpu_model() -> str:
    """lscpu's model name (it also names aarch64 cores, where /proc/cpuinfo has no model name)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        text = ""
    found = re.search(r"^Model name:\s+(.+)$", text, re.M)
    return found.group(1).strip() if found else platform.processor() or "unknown"


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"
