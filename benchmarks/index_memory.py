#!/usr/bin/env python3
"""Memory per RAG worker with 1 and 4 workers, the FAISS vectors memory-mapped (index.mmap) or copied.

  .venv/bin/python benchmarks/index_memory.py        # four TorchServe starts, ~3 min on 2 cores

Archives configs/rag-docs.yaml (compile off, batchSize 1 so requests spread over the workers) into
build/bench-archive/, starts a private TorchServe (ports 38150-38154), sends each worker some
questions so its search touches every vector, then reads /proc/<worker>/smaps: the worker's RSS, PSS
(shared pages divided among the processes that map them) and anonymous memory, and the RSS and PSS of
the index.faiss mapping alone. Writes report.md, figures.json and setup.json under
benchmarks/results/index-memory-<date>-<host>/.
"""

from __future__ import annotations

import argparse
import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from benchlib.model_archive import archive_rag, bench_yaml, stage_inputs
from benchlib.private_server import BenchServer
from benchlib.report import Results, add_out_argument

ROOT = Path(__file__).resolve().parent.parent
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
    doc = bench_yaml()
    doc.update(minWorkers=workers, maxWorkers=workers, batchSize=1)
    doc["handler"]["index"]["mmap"] = mmap
    archive_rag(WORKDIR, doc, WORKDIR / "archive.log")
    server = BenchServer(WORKDIR)  # a free port block (ragserve_ops/ports.py)
    try:
        server.start(["rag"], timeout_s=900)
        with ThreadPoolExecutor(workers * 2) as pool:  # concurrent requests reach every worker
            statuses = list(pool.map(lambda _: server.post("rag", QUESTION)[0], range(workers * 8)))
        assert set(statuses) == {200}, statuses
        per_worker = [smaps(pid) for pid in server.worker_pids("rag")]
    finally:
        server.stop_and_wait()
    mean = {name: sum(w[name] for w in per_worker) / len(per_worker) for name in per_worker[0]}
    mean["searched"] = sum(w["index_rss"] > 0 for w in per_worker) if mmap else len(per_worker)
    return mean


def report(rows: list[tuple[int, bool, dict[str, float]]], index_kb: float, setup: dict[str, Any]) -> str:
    lines = [
        f"# RAG worker memory, {setup['date']} on {setup['host']} ({setup['cpu']}, {setup['arch']})",
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
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_out_argument(parser, "index-memory")
    args = parser.parse_args()
    results = Results.create("index-memory", args.out)
    stage_inputs(bench_yaml(), WORKDIR)
    rows = [(w, mmap, measure(w, mmap)) for w in (1, 4) for mmap in (False, True)]
    index_kb = max(p.stat().st_size for p in (WORKDIR / "index").rglob("index.faiss")) / 1024
    text = report(rows, index_kb, results.setup)
    results.write_json("figures.json", [{"workers": w, "mmap": mmap, **m} for w, mmap, m in rows])
    print(text + f"\nwrote {results.write_report(text)}")


if __name__ == "__main__":
    main()
