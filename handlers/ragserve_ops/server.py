"""A private TorchServe for tests and benchmarks: own ports, model store, key file and pid file in a workdir.

`make serve` runs the user's server on 8080-8082 (gRPC 7070-7071) from the repository; this one runs
beside it without touching it. Every port it listens on moves with `port`: HTTP port..port+2, gRPC
port+3 and port+4, worker sockets port+1000 and up. Without a port it reserves a free block
(ragserve_ops/ports.py) for as long as it lives. TorchServe keeps its pid file in TMPDIR, so each workdir gets
its own. stop() returns once the frontend has exited and its ports bind again, so a restart can follow.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import yaml

from ragserve_ops.client import ROOT, Keys, call, request, server_pid, wait_ready
from ragserve_ops.ports import BLOCK_SIZE, PortBlock, reserve, wait_free

VENV_BIN = Path(sys.executable).parent
GRAVITON_ENV = ROOT / "configs" / "graviton.env"


def platform_env(machine: str = platform.machine()) -> dict[str, str]:
    """The worker settings `scripts/serve.sh` applies on this CPU (configs/graviton.env on aarch64)."""
    if machine not in ("aarch64", "arm64"):
        return {}
    pairs = (line.split("=", 1) for line in GRAVITON_ENV.read_text().splitlines() if "=" in line)
    return {name.strip(): value.strip() for name, value in pairs if not name.lstrip().startswith("#")}


@dataclass
class TorchServe:
    workdir: Path
    # Inference; management, metrics, gRPC inference and gRPC management follow (+1..+4). None: a free block.
    port: int | None = None
    properties: dict[str, str] = field(default_factory=dict)  # more config.properties settings
    environment: dict[str, str] = field(default_factory=dict)  # more environment for the server and its workers
    reservation: PortBlock | None = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.port is None:
            self.reservation = reserve()
            self.port = self.reservation.base

    @property
    def ports(self) -> list[int]:
        """The TCP ports it listens on: HTTP inference, management, metrics; gRPC inference, management."""
        return [self.port + offset for offset in range(BLOCK_SIZE)]

    @property
    def inference_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def management_url(self) -> str:
        return f"http://127.0.0.1:{self.port + 1}"

    @property
    def key_file(self) -> Path:
        return self.workdir / "key_file.json"

    @property
    def keys(self) -> Keys:
        return Keys(self.key_file, self.management_url)

    @property
    def log_dir(self) -> Path:
        return self.workdir / "logs"

    @property
    def env(self) -> dict[str, str]:
        tmp = self.workdir / "tmp"  # TorchServe's pid file lives in TMPDIR: keep it apart from `make serve`
        tmp.mkdir(exist_ok=True)
        return {
            **os.environ,
            **platform_env(),
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "TMPDIR": str(tmp),
            "LOG_LOCATION": str(self.log_dir),
            "METRICS_LOCATION": str(self.log_dir),
            **self.environment,
        }

    def start(self, models: list[str], timeout_s: float = 900, all_workers: bool = False) -> float:
        """Start with the project's config.properties (ports moved) and wait until models are ready: one
        READY worker each, or with all_workers their minWorkers. Returns the seconds waited.

        Raises SystemExit within seconds, with TorchServe's own log line, when the server exits instead.
        """
        console = self.log_dir / "torchserve.out"
        offset = console.stat().st_size if console.exists() else 0  # a restart appends to the same file
        self.launch(models)
        token_auth = self.properties.get("disable_token_authorization") != "true"  # off: no key file to read
        tmp = self.workdir / "tmp"
        return wait_ready(models, timeout_s, self.keys, self.log_dir, tmp, offset, token_auth, all_workers)

    def config_properties(self) -> str:
        """The project's config.properties with this server's ports and extra properties."""
        settings = {
            "inference_address": self.inference_url,
            "management_address": self.management_url,
            "metrics_address": f"http://127.0.0.1:{self.port + 2}",
            "grpc_inference_port": str(self.port + 3),
            "grpc_management_port": str(self.port + 4),
            # Worker sockets are /tmp/.ts.sock.<port> whatever TMPDIR is: keep ours apart from `make serve`'s 9000+.
            "initial_worker_port": str(self.port + 1000),
            **self.properties,
        }
        lines = []
        for line in (ROOT / "config.properties").read_text().splitlines():
            name = line.split("=", 1)[0].strip()
            lines.append(f"{name}={settings.pop(name)}" if name in settings and "=" in line else line)
        return "\n".join(lines + [f"{name}={value}" for name, value in settings.items()]) + "\n"

    def launch(self, models: list[str]) -> None:
        """Write the private config.properties and run `torchserve --start` (returns before workers are ready)."""
        (self.workdir / "config.properties").write_text(self.config_properties())
        cmd = [
            str(VENV_BIN / "torchserve"),
            "--start",
            "--ncs",
            "--model-store",
            str(self.workdir / "model_store"),
            "--ts-config",
            "config.properties",
            *(["--models", *[f"{m}={model_file(self.workdir / 'model_store', m)}" for m in models]] if models else []),
        ]
        # The Java frontend inherits the output streams: a log file, not a pipe, or run() never returns.
        self.log_dir.mkdir(exist_ok=True)
        with open(self.log_dir / "torchserve.out", "ab") as out:
            subprocess.run(cmd, cwd=self.workdir, env=self.env, check=True, stdout=out, stderr=subprocess.STDOUT)

    def stop(self, timeout_s: float = 60) -> None:
        """`torchserve --stop`, then wait until the frontend and its workers have exited and the ports bind again.

        `--stop` only sends SIGTERM and returns: a start on the same ports right after it could fail to bind.
        What outlives timeout_s is killed (this server's processes only); RuntimeError if a port stays taken.
        """
        processes = self.processes()
        subprocess.run(
            [str(VENV_BIN / "torchserve"), "--stop"],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        _, alive = psutil.wait_procs(processes, timeout=timeout_s)
        for process in alive:
            process.kill()
        psutil.wait_procs(alive, timeout=10)
        if processes:
            wait_free(self.ports, timeout_s)

    def release(self) -> None:
        """Give a reserved port block back: after the last stop (until then a restart keeps the same ports)."""
        if self.reservation is not None:
            self.reservation.release()

    def processes(self) -> list[psutil.Process]:
        """This workdir's running frontend (its pid file, checked against the process's cwd) and its workers."""
        pid = server_pid(self.workdir / "tmp")
        try:
            frontend = psutil.Process(pid) if pid is not None else None
            if frontend is None or Path(frontend.cwd()).resolve() != self.workdir.resolve():
                return []  # not running, or the pid now belongs to another process
            return [frontend, *frontend.children(recursive=True)]
        except psutil.Error:
            return []

    def post(
        self,
        model: str,
        body: bytes,
        content_type: str = "text/plain",
        key: str | None = "inference",
        timeout_s: float = 120,
    ) -> tuple[int, str, str]:
        """POST to a model; key "inference" is the server's own (renewed if expired), else sent as given."""
        url = f"{self.inference_url}/predictions/{model}"
        if key == "inference":
            return call(url, body, self.keys, "inference", content_type, timeout_s)
        return request(url, body, key, content_type, timeout_s)

    def worker_pids(self, model: str) -> list[int]:
        _, _, text = call(f"{self.management_url}/models/{model}", keys=self.keys, kind="management")
        return sorted(w["pid"] for entry in json.loads(text) for w in entry["workers"])


@contextmanager
def running(
    workdir: Path, models: list[str], port: int | None = None, **settings: dict[str, str]
) -> Iterator[TorchServe]:
    """A TorchServe on workdir's model store and these ports (None: a free block), started and (whatever
    happens) stopped, its ports given back."""
    server = TorchServe(workdir, port, **settings)
    try:
        server.start(models)
        yield server
    finally:
        server.stop()
        server.release()


def model_file(store: Path, name: str) -> str:
    """The archive `--models` names for a model: rag.mar or rag.tar.gz when one was built, else the folder."""
    for suffix in (".mar", ".tar.gz"):
        if (store / f"{name}{suffix}").is_file():
            return f"{name}{suffix}"
    return name


def write_model_yaml(path: Path, handler: Mapping[str, Any], frontend: Mapping[str, Any] | None = None) -> Path:
    """A TorchServe model yaml: the frontend keys (minWorkers, batchSize, ...) and the `handler:` section.

    Settings are plain mappings, changed with ragserve.config.override (dotted keys), never YAML text."""
    path.write_text(yaml.safe_dump({**(frontend or {}), "handler": dict(handler)}, sort_keys=False))
    return path


def prepare_rag_archive(
    workdir: Path, handler: Mapping[str, Any], frontend: Mapping[str, Any] | None = None, name: str = "rag"
) -> Path:
    """Write a model yaml, build its index under workdir and archive it into workdir/model_store/<name>."""
    config = write_model_yaml(workdir / f"{name}-test.yaml", handler, frontend)
    subprocess.run([sys.executable, ROOT / "scripts/build_index.py", "--config", config, "--root", workdir], check=True)
    return _archive(workdir, config, "rag", name)


def prepare_llm_archive(
    workdir: Path, handler: Mapping[str, Any], frontend: Mapping[str, Any] | None = None, name: str = "llm"
) -> Path:
    """Write an LLM model yaml and archive it into workdir/model_store/<name>."""
    return _archive(workdir, write_model_yaml(workdir / f"{name}-test.yaml", handler, frontend), "llm", name)


def _archive(workdir: Path, config: Path, endpoint: str, name: str) -> Path:
    """ragserve_ops.archive on config, into workdir/model_store/<name> (relative paths resolved under workdir)."""
    store = workdir / "model_store"
    args = ["--endpoint", endpoint, "--config", config, "--name", name, "--root", workdir, "--store", store]
    subprocess.run([sys.executable, "-m", "ragserve_ops.archive", *args], check=True)
    return store / name
