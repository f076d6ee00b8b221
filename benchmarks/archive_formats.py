#!/usr/bin/env python3
"""Archive size, archive time and worker-ready time of the RAG endpoint per archive format.

  .venv/bin/python benchmarks/archive_formats.py            # all three formats, ~3 min on 2 cores
  .venv/bin/python benchmarks/archive_formats.py --formats mar tgz

Archives configs/rag-docs.yaml (index prebuilt once, under build/bench-archive/) as a no-archive
folder, a .mar and a .tar.gz, then starts a private TorchServe (ports 38100-38104) on each and times
`torchserve --start` until the worker is READY. torch.compile is off here: its warm-up is the same for
every format and would bury the differences (unpacking) this measures. Writes report.md, figures.json
and setup.json under benchmarks/results/archive-<date>-<host>/. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchlib.model_archive import archive_rag, bench_yaml, stage_inputs
from benchlib.private_server import BenchServer
from benchlib.report import Results, add_out_argument
from ragserve_ops.archive import FORMATS, archive_path

ROOT = Path(__file__).resolve().parent.parent


def prepare(workdir: Path) -> Path:
    """workdir with the inputs staged and the index built (model_archive); returns the yaml the formats archive."""
    doc = bench_yaml()
    stage_inputs(doc, workdir)
    archive_rag(workdir, doc, workdir / "index.log")
    config = workdir / "rag-bench.yaml"
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    return config


def run(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def sizes(path: Path) -> tuple[int, int]:
    """(bytes of every file, bytes not hard-linked from elsewhere: what the archive adds to the disk)."""
    files = [p for p in path.rglob("*") if p.is_file()] if path.is_dir() else [path]
    stats = [p.stat() for p in files]
    return sum(s.st_size for s in stats), sum(s.st_size for s in stats if s.st_nlink == 1)


def ready_time(workdir: Path) -> float:
    """Seconds from `torchserve --start` until the rag worker is READY, then stop (until the ports are free)."""
    server = BenchServer(workdir)  # a free port block (ragserve_ops/ports.py)
    start = time.perf_counter()
    try:
        server.start(["rag"], timeout_s=600)
        return time.perf_counter() - start
    finally:
        server.stop_and_wait()


def measure(fmt: str, config: Path, workdir: Path) -> dict[str, float]:
    store = workdir / "model_store"
    archive_s = run(
        [sys.executable, str(ROOT / "scripts/archive.py"), "--config", str(config), "--name", "rag"]
        + ["--root", str(workdir), "--store", str(store), "--format", fmt]
    )
    total, new = sizes(archive_path(store, "rag", fmt))
    return {"archive_s": archive_s, "bytes": total, "new_bytes": new, "ready_s": ready_time(workdir)}


def report(rows: dict[str, dict[str, float]], setup: dict[str, Any]) -> str:
    lines = [
        f"# Archive formats, {setup['date']} on {setup['host']} ({setup['cpu']}, {setup['arch']})",
        "",
        "RAG endpoint, configs/rag-docs.yaml with compile off; ready = `torchserve --start` until the worker is READY.",
        "",
        "| format | size MB | new on disk MB | archive s | worker ready s |",
        "|---|---:|---:|---:|---:|",
    ]
    for fmt, row in rows.items():
        lines.append(
            f"| {fmt} | {row['bytes'] / 1e6:.0f} | {row['new_bytes'] / 1e6:.0f} "
            f"| {row['archive_s']:.1f} | {row['ready_s']:.1f} |"
        )
    lines += ["", "new on disk: bytes not hard-linked from models/ (a no-archive folder links the weights)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--formats", nargs="+", choices=list(FORMATS), default=list(FORMATS))
    parser.add_argument("--workdir", type=Path, default=ROOT / "build" / "bench-archive")
    add_out_argument(parser, "archive")
    args = parser.parse_args()
    results = Results.create("archive", args.out)
    config = prepare(args.workdir)
    rows = {fmt: measure(fmt, config, args.workdir) for fmt in args.formats}
    results.write_json("figures.json", rows)
    path = results.write_report(report(rows, results.setup))
    print(report(rows, results.setup))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
