"""An index build on a real Ray cluster (build_index.py --ray-address, embedding/distributed.py) equals the
in-process build: the same chunks in the same order, every vector within cosine 0.9999.

The cluster is two nodes on loopback, started with `ray start` (a head and one more node, 1 CPU each, every
port a free one the kernel gave, its own --temp-dir) and stopped by killing exactly the processes that
name that temp dir, and their children: `ray stop` would kill every Ray process of the user. The encoder
is the tiny random MPNet (committed tokenizer), so nothing is downloaded."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import faiss
import numpy as np
import psutil
import pytest
import yaml

from ragserve.config import CompileConfig, Config
from ragserve.embedding.encoder import Encoder
from ragserve.index.builder import refresh
from ragserve.index.line import IndexLine
from ragserve_ops.testing import FIXTURES, ROOT, build_tiny_mpnet

RAY = Path(sys.executable).parent / "ray"
START_S = 120  # one `ray start` (imports, GCS, raylet) on 2 busy cores
BUILD_S = 300  # the build: two actors import torch and load the model, then embed ~100 texts
STOP_S = 5  # then SIGKILL: some of Ray's processes outlive SIGTERM, and a test cluster keeps nothing
NODE_PORTS = ("--node-manager-port", "--object-manager-port", "--dashboard-agent-listen-port",
              "--dashboard-agent-grpc-port", "--runtime-env-agent-port", "--metrics-export-port")  # fmt: skip
WORKER_PORTS = 12  # ports for a node's worker processes (the actor, Ray Data's tasks, idle workers)


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out as free on loopback (ephemeral range: clear of the TorchServe blocks)."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def node_args(ports: list[int]) -> list[str]:
    named = [arg for flag, port in zip(NODE_PORTS, ports, strict=False) for arg in (flag, str(port))]
    workers = ",".join(map(str, ports[len(NODE_PORTS) :]))
    return ["--node-ip-address", "127.0.0.1", "--num-cpus", "1", "--num-gpus", "0", *named, "--worker-port-list",
            workers, "--object-store-memory", str(100 * 2**20), "--disable-usage-stats"]  # fmt: skip


def ray_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_")}
    return {**env, "RAY_USAGE_STATS_ENABLED": "0"}


def stop(temp: Path) -> None:
    """Kill the processes of this cluster only: those whose command line names its temp dir, and children."""
    ours = [p for p in psutil.process_iter(["cmdline"]) if str(temp) in " ".join(p.info["cmdline"] or ())]
    family = {p.pid: p for p in ours}
    for p in ours:
        try:
            family.update((child.pid, child) for child in p.children(recursive=True))
        except psutil.NoSuchProcess:
            pass
    for p in family.values():
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family.values(), timeout=STOP_S)
    for p in alive:
        p.kill()
    psutil.wait_procs(alive, timeout=STOP_S)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`ray start --head` plus one more node on 127.0.0.1; the head's address."""
    temp = tmp_path_factory.mktemp("ray")  # short: Ray's unix sockets live below it (107-byte limit)
    ports = free_ports(1 + 2 * (len(NODE_PORTS) + WORKER_PORTS))
    address = f"127.0.0.1:{ports[0]}"
    head, node = ports[1 : 1 + len(NODE_PORTS) + WORKER_PORTS], ports[1 + len(NODE_PORTS) + WORKER_PORTS :]
    head_args = ["--head", "--port", str(ports[0]), "--include-dashboard", "false", "--temp-dir", str(temp)]
    try:
        for args in ([*head_args, *node_args(head)], ["--address", address, *node_args(node)]):
            subprocess.run([str(RAY), "start", *args], env=ray_env(), check=True, timeout=START_S, capture_output=True)
        yield address
    finally:
        stop(temp)
        assert not [p for p in psutil.process_iter(["cmdline"]) if str(temp) in " ".join(p.info["cmdline"] or ())]


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny random MPNet of tests/test_tiny_encoder.py, saved as a model folder every node can read."""
    return build_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet"))


def handler(model: Path, index_dir: Path) -> dict:
    return {
        "corpus": {"source": str(FIXTURES / "docs"), "chunk_size": 200, "chunk_overlap": 20},
        "embedding": {"model_path": str(model), "batch_size": 4, "backend": "torch"},
        "compile": {"enabled": False},
        "index": {"dir": str(index_dir), "follow_s": 0},
    }


def vectors(folder: Path) -> dict[str, np.ndarray]:
    """Every vector set of a version folder: the chunks' (FAISS), the page records' and the sentence windows'."""
    index = faiss.read_index(str(folder / "index.faiss"))
    found = {"chunks": index.reconstruct_n(0, index.ntotal)}
    found.update((path.parent.name, np.load(path)) for path in folder.glob("*/vectors.npy"))
    return found


def test_a_build_on_a_ray_cluster_equals_the_in_process_build(cluster: str, tiny_model: Path, tmp_path: Path) -> None:
    config = tmp_path / "rag.yaml"
    config.write_text(yaml.safe_dump({"handler": handler(tiny_model, tmp_path / "ray-index")}))
    script = ROOT / "scripts" / "build_index.py"
    command = [sys.executable, str(script), "--config", str(config), "--root", str(tmp_path), "--ray-address", cluster]
    done = subprocess.run(command, env=ray_env(), capture_output=True, text=True, timeout=BUILD_S)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "on 2 Ray workers (cpu, 1 CPUs each)" in done.stderr  # both nodes embedded
    on_ray = Path(done.stdout.strip().splitlines()[-1])

    cfg = Config.from_mapping(handler(tiny_model, tmp_path / "local-index"), tmp_path)
    local = refresh(cfg, lambda: Encoder(cfg.embedding, CompileConfig(enabled=False)))
    in_process = IndexLine.of(cfg).folder(local.version)

    assert on_ray.name == local.version  # the same line and content
    assert (on_ray / "chunks.jsonl").read_bytes() == (in_process / "chunks.jsonl").read_bytes()
    expected, got = vectors(in_process), vectors(on_ray)
    assert set(got) == set(expected) == {"chunks", "pages", "windows-3-3"}
    for name, vectors_in_process in expected.items():
        assert got[name].shape == vectors_in_process.shape
        cosines = np.sum(got[name] * vectors_in_process, axis=1)  # unit rows
        assert cosines.min() >= 0.9999, (name, cosines.min())
    for owner in in_process.glob("*/owner.npy"):
        np.testing.assert_array_equal(np.load(on_ray / owner.relative_to(in_process)), np.load(owner))
