#!/usr/bin/env python3
"""Memory per RAG worker with 1 and 4 workers, the FAISS vectors memory-mapped (index.mmap) or copied.

  .venv/bin/python benchmarks/index_memory.py        # four TorchServe starts, ~3 min on 2 cores

Archives configs/rag-docs.yaml (compile off, batchSize 1 so requests spread over the workers) into
build/bench-archive/, starts a private TorchServe (ports 38150-38154), sends each worker some
questions so its search touches every vector, then reads /proc/<worker>/smaps: the worker's RSS, PSS
(shared pages divided among the processes that map them) and anonymous memory, and the RSS and PSS of
the index.faiss mapping alone. Writes benchmarks/results/index-memory-<date>-<host>/report.md.
"""

from __future__ import annotations

import datetime
import platform
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

from archive_formats import prepare_workdir, stop_and_wait, write_config  # noqa: E402
from sysinfo import cpu_model  # noqa: E402

from ragserve.ops.server import TorchServe  # noqa: E402

PORT = 38150
WORKDIR = ROOT / "build" / "bench-archive"
QUESTION = b"How do I rotate the TorchServe token?"


def smaps(pid: int) -> dict[str, float]:
    """KB of the whole process (rss, pss, anon) and of its index.faiss mapping (index_rss, index_pss)."""
    figures = dict.fromkeys(("rss", "pss", "anon", "index_rss", "index_pss"), 0.0)
    in_index = False
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        if re.match(r"^[0-9a-f]+-[0-9a-f]+ ", line):
            in_index = line.endswith("/index.faiss")
            continue
        name, _, rest = line.partition(":")
        field = {"Rss": "rss", "Pss": "pss", "Anonymous": "anon"}.get(name)
        if field:
            kb = float(rest.split()[0])
            figures[field] += kb
            if in_index and field in ("rss", "pss"):
                figures[f"index_{field}"] += kb
    return figures


def measure(workers: int, mmap: bool) -> dict[str, float]:
    """Start with this many workers, make every worker search, average /proc figures over the workers."""
    config = write_config(WORKDIR)
    doc = yaml.safe_load(config.read_text())
    doc.update(minWorkers=workers, maxWorkers=workers, batchSize=1)
    doc["handler"]["index"]["mmap"] = mmap
    config.write_text(yaml.safe_dump(doc, sort_keys=False))
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/archive.py"), "--config", str(config), "--name", "rag"]
        + ["--root", str(WORKDIR), "--store", str(WORKDIR / "model_store")],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    server = TorchServe(WORKDIR, port=PORT)
    try:
        server.start(["rag"], timeout_s=900)
        with ThreadPoolExecutor(workers * 2) as pool:  # concurrent requests reach every worker
            statuses = list(pool.map(lambda _: server.post("rag", QUESTION)[0], range(workers * 8)))
        assert set(statuses) == {200}, statuses
        per_worker = [smaps(pid) for pid in server.worker_pids("rag")]
    finally:
        stop_and_wait(server)
    mean = {name: sum(w[name] for w in per_worker) / len(per_worker) for name in per_worker[0]}
    mean["searched"] = sum(w["index_rss"] > 0 for w in per_worker) if mmap else len(per_worker)
    return mean


def report(rows: list[tuple[int, bool, dict[str, float]]], index_kb: float) -> str:
    lines = [
        f"# RAG worker memory, {datetime.date.today()} on {platform.node()} ({cpu_model()}, {platform.machine()})",
        "",
        f"configs/rag-docs.yaml, compile off; index.faiss is {index_kb:.0f} KB. Means over the workers, in MB"
        " (index mapping in KB).",
        "",
        "| workers | vectors | RSS | PSS | anonymous | index.faiss RSS KB | index.faiss PSS KB | workers mapped |",
        "|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for workers, mmap, m in rows:
        lines.append(
            f"| {workers} | {'mmap' if mmap else 'copy'} | {m['rss'] / 1024:.0f} | {m['pss'] / 1024:.0f} "
            f"| {m['anon'] / 1024:.0f} | {m['index_rss']:.0f} | {m['index_pss']:.0f} "
            f"| {int(m['searched']) if mmap else '-'} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    prepare_workdir(WORKDIR)
    config = write_config(WORKDIR)
    subprocess.run(
        [sys.executable, str(ROOT / "scripts/build_index.py"), "--config", str(config), "--root", str(WORKDIR)],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    rows = [(w, mmap, measure(w, mmap)) for w in (1, 4) for mmap in (False, True)]
    index_kb = max(p.stat().st_size for p in (WORKDIR / "index").rglob("index.faiss")) / 1024
    text = report(rows, index_kb)
    out = ROOT / "benchmarks" / "results" / f"index-memory-{datetime.date.today()}-{platform.node()}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(text)
    print(text + f"\nwrote {out / 'report.md'}")


if __name__ == "__main__":
    main()
