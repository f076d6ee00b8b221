#!/usr/bin/env python3
"""Archive size, archive time and worker-ready time of the RAG endpoint per archive format.

  .venv/bin/python benchmarks/archive_formats.py            # all three formats, ~3 min on 2 cores
  .venv/bin/python benchmarks/archive_formats.py --formats mar tgz

Archives configs/rag-docs.yaml (index prebuilt once, under build/bench-archive/) as a no-archive
folder, a .mar and a .tar.gz, then starts a private TorchServe (ports 38100-38104) on each and times
`torchserve --start` until the worker is READY. torch.compile is off here: its warm-up is the same for
every format and would bury the differences (unpacking) this measures. Writes
benchmarks/results/archive-<date>-<host>/report.md. Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import datetime
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

from sysinfo import cpu_model  # noqa: E402

from ragserve.ops.archive import FORMATS, archive_path  # noqa: E402
from ragserve.ops.client import is_running, server_pid  # noqa: E402
from ragserve.ops.server import TorchServe  # noqa: E402

PORT = 38100  # inside this project's benchmark range; worker sockets at 39100+


def prepare_workdir(workdir: Path) -> None:
    """models/ linked and corpus/ copied into workdir, so rag-docs.yaml's relative paths resolve there.

    A copy, not a link: the corpus fingerprint is part of the index key, and an edit to corpus/ during
    a run would otherwise make the next archive look for an index that was never built.
    """
    workdir.mkdir(parents=True, exist_ok=True)
    if not (workdir / "models").exists():
        (workdir / "models").symlink_to(ROOT / "models")
    if (workdir / "corpus").is_symlink():
        (workdir / "corpus").unlink()
    shutil.rmtree(workdir / "corpus", ignore_errors=True)
    shutil.copytree(ROOT / "corpus", workdir / "corpus")


def write_config(workdir: Path) -> Path:
    """rag-docs.yaml with compile off, written into workdir (see prepare_workdir)."""
    doc = yaml.safe_load((ROOT / "configs" / "rag-docs.yaml").read_text())
    doc["handler"]["compile"]["enabled"] = False
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


def stop_and_wait(server: TorchServe) -> None:
    """`torchserve --stop`, then wait until the frontend has exited, so the ports are free for the next start."""
    server.stop()
    pid = server_pid(server.workdir / "tmp")
    while pid is not None and is_running(pid):
        time.sleep(0.2)


def ready_time(workdir: Path) -> float:
    """Seconds from `torchserve --start` until the rag worker is READY, then stop."""
    server = TorchServe(workdir, port=PORT)
    start = time.perf_counter()
    try:
        server.start(["rag"], timeout_s=600)
        return time.perf_counter() - start
    finally:
        stop_and_wait(server)


def measure(fmt: str, config: Path, workdir: Path) -> dict[str, float]:
    store = workdir / "model_store"
    archive_s = run(
        [sys.executable, str(ROOT / "scripts/archive.py"), "--config", str(config), "--name", "rag"]
        + ["--root", str(workdir), "--store", str(store), "--format", fmt]
    )
    total, new = sizes(archive_path(store, "rag", fmt))
    return {"archive_s": archive_s, "bytes": total, "new_bytes": new, "ready_s": ready_time(workdir)}


def report(rows: dict[str, dict[str, float]]) -> str:
    lines = [
        f"# Archive formats, {datetime.date.today()} on {platform.node()} ({cpu_model()}, {platform.machine()})",
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
    args = parser.parse_args()
    prepare_workdir(args.workdir)
    config = write_config(args.workdir)
    run([sys.executable, str(ROOT / "scripts/build_index.py"), "--config", str(config), "--root", str(args.workdir)])
    rows = {fmt: measure(fmt, config, args.workdir) for fmt in args.formats}
    out = ROOT / "benchmarks" / "results" / f"archive-{datetime.date.today()}-{platform.node()}"
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(report(rows))
    print(report(rows))
    print(f"wrote {out / 'report.md'}")


if __name__ == "__main__":
    main()
