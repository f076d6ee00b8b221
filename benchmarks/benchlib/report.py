"""Every benchmark's results folder: `benchmarks/results/<benchmark>-<YYYY-MM-DD>-<host tag>/`, made once per run.

Public: `Results` (create, write_report, write_json, write_jsonl, write_csv), `machine`, `cpu_model`,
`package_version`, `host_tag`. A folder holds report.md (the benchmark's markdown, then a "Set-up" section),
setup.json (the same set-up: date, command, CPU model, cores, memory, OS, package versions, load average) and
whatever data files the benchmark writes through it. No measuring here, and no TorchServe.
"""

from __future__ import annotations

import argparse
import csv
import datetime
import importlib.metadata
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

RESULTS = Path(__file__).resolve().parents[1] / "results"
PACKAGES = ("torch", "transformers", "torchserve", "faiss-cpu")  # recorded for every benchmark


def host_tag() -> str:
    """The host name up to its first dot, safe in a folder name."""
    return re.sub(r"[^A-Za-z0-9_-]", "-", socket.gethostname().split(".")[0]) or "host"


def default_folder(benchmark: str) -> Path:
    return RESULTS / f"{benchmark}-{datetime.date.today().isoformat()}-{host_tag()}"


def cpu_model() -> str:
    """lscpu's model name (it also names aarch64 cores, where /proc/cpuinfo has no model name)."""
    try:
        text = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    except OSError:
        text = ""
    found = re.search(r"^Model name:\s+(.+)$", text, re.M)
    return found.group(1).strip() if found else platform.processor() or "unknown"


def gpu_model() -> str | None:
    """nvidia-smi's GPU names (no torch import: most benchmarks never load it), or None without one."""
    if shutil.which("nvidia-smi") is None:
        return None
    done = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    names = [line.strip() for line in done.stdout.splitlines() if line.strip()]
    return ", ".join(names) if done.returncode == 0 and names else None


def package_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def machine(packages: Iterable[str] = ()) -> dict[str, str]:
    """The set-up a figure depends on: host, CPU, cores, memory, OS, Python and package versions."""
    info = {
        "host": socket.gethostname(),
        "cpu": cpu_model(),
        "arch": platform.machine(),
        "cores": f"{os.cpu_count()} logical, {psutil.cpu_count(logical=False)} physical, "
        f"{len(os.sched_getaffinity(0))} usable",
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "os": platform.platform(),
        "python": platform.python_version(),
    }
    gpu = gpu_model()
    if gpu:
        info["gpu"] = gpu
    for package in dict.fromkeys([*PACKAGES, *packages]):  # in order, once each
        info[package] = package_version(package)
    return info


def _cell(value: Any, digits: int) -> Any:
    if isinstance(value, float):
        return "" if value != value else f"{value:.{digits}f}"  # NaN -> empty
    return value


@dataclass
class Results:
    """One run's results folder and the set-up it records; `setup` takes more entries during the run."""

    benchmark: str
    folder: Path
    setup: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)

    @classmethod
    def create(cls, benchmark: str, out: Path | None = None, packages: Iterable[str] = ()) -> Results:
        """Make the folder (out, else the default name) and record the set-up now."""
        folder = (out or default_folder(benchmark)).resolve()
        folder.mkdir(parents=True, exist_ok=True)
        setup = {"benchmark": benchmark, "date": datetime.date.today().isoformat()}
        setup["command"] = " ".join([Path(sys.executable).name, *sys.argv])
        setup.update(machine(packages))
        setup["load average at start"] = load_average()
        return cls(benchmark, folder, setup)

    def path(self, name: str) -> Path:
        return self.folder / name

    def set_up_markdown(self) -> str:
        return "## Set-up\n\n" + "\n".join(f"- {key}: {value}" for key, value in self.setup.items()) + "\n"

    def write_report(self, markdown: str) -> Path:
        """report.md (the markdown, then the set-up section) and setup.json; the wall time is recorded here."""
        self.setup["load average at end"] = load_average()
        self.setup["wall time"] = f"{time.monotonic() - self.started:.0f} s"
        self.write_json("setup.json", self.setup)
        path = self.path("report.md")
        path.write_text(markdown.rstrip("\n") + "\n\n" + self.set_up_markdown(), encoding="utf-8")
        return path

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path(name)
        path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        return path

    def write_jsonl(self, name: str, rows: Iterable[dict[str, Any]]) -> Path:
        path = self.path(name)
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return path

    def write_csv(self, name: str, rows: Iterable[dict[str, Any]], fields: list[str], digits: int = 4) -> Path:
        """One row per dict (keys outside fields ignored, missing ones empty); floats to `digits` places, NaN empty."""
        path = self.path(name)
        with path.open("w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            writer.writeheader()
            writer.writerows({k: _cell(row.get(k, ""), digits) for k in fields} for row in rows)
        return path


def add_out_argument(parser: argparse.ArgumentParser, benchmark: str) -> None:
    """The --out flag every benchmark takes (default: its folder under benchmarks/results/)."""
    parser.add_argument(
        "--out", type=Path, help=f"results folder (default benchmarks/results/{benchmark}-<date>-<host>/)"
    )
