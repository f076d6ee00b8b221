"""A private TorchServe for tests and benchmarks: own ports, model store, key file and pid file in a workdir.

`make serve` runs the user's server on 8080-8082 from the repository; this one runs beside it
without touching it (TorchServe keeps its pid file in TMPDIR, so each workdir gets its own).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from tsclient import ROOT, read_key, request, wait_ready

VENV_BIN = Path(sys.executable).parent


@dataclass
class TorchServe:
    workdir: Path
    port: int = 18080  # inference; management and metrics follow (+1, +2)

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
    def env(self) -> dict[str, str]:
        tmp = self.workdir / "tmp"  # TorchServe's pid file lives in TMPDIR: keep it apart from `make serve`
        tmp.mkdir(exist_ok=True)
        return {
            **os.environ,
            "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
            "TMPDIR": str(tmp),
            "LOG_LOCATION": str(self.workdir / "logs"),
            "METRICS_LOCATION": str(self.workdir / "logs"),
        }

    def start(self, models: list[str], timeout_s: float = 900) -> float:
        """Start with the project's config.properties (ports moved) and wait until models are ready."""
        self.launch(models)
        return wait_ready(models, timeout_s, self.management_url, self.key_file, self.workdir / "logs")

    def launch(self, models: list[str]) -> None:
        """Write the private config.properties and run `torchserve --start` (returns before workers are ready)."""
        properties = (ROOT / "config.properties").read_text()
        for old, new in ((8080, self.port), (8081, self.port + 1), (8082, self.port + 2)):
            properties = properties.replace(f"127.0.0.1:{old}", f"127.0.0.1:{new}")
        # Worker sockets are /tmp/.ts.sock.<port> whatever TMPDIR is: keep ours apart from `make serve`'s 9000+.
        properties += f"\ninitial_worker_port={self.port + 1000}\n"
        (self.workdir / "config.properties").write_text(properties)
        cmd = [
            str(VENV_BIN / "torchserve"),
            "--start",
            "--ncs",
            "--model-store",
            str(self.workdir / "model_store"),
            "--ts-config",
            "config.properties",
            "--models",
            *[f"{m}={m}" for m in models],
        ]
        # The Java frontend inherits the output streams: a log file, not a pipe, or run() never returns.
        (self.workdir / "logs").mkdir(exist_ok=True)
        with open(self.workdir / "logs" / "torchserve.out", "ab") as out:
            subprocess.run(cmd, cwd=self.workdir, env=self.env, check=True, stdout=out, stderr=subprocess.STDOUT)

    def stop(self) -> None:
        subprocess.run(
            [str(VENV_BIN / "torchserve"), "--stop"],
            cwd=self.workdir,
            env=self.env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def post(
        self,
        model: str,
        body: bytes,
        content_type: str = "text/plain",
        key: str | None = "inference",
        timeout_s: float = 120,
    ) -> tuple[int, str, str]:
        token = read_key("inference", self.key_file) if key == "inference" else key
        return request(f"{self.inference_url}/predictions/{model}", body, token, content_type, timeout_s)

    def worker_pids(self, model: str) -> list[int]:
        _, _, text = request(f"{self.management_url}/models/{model}", key=read_key("management", self.key_file))
        return sorted(w["pid"] for entry in json.loads(text) for w in entry["workers"])


def prepare_rag_archive(workdir: Path, handler_yaml: str, frontend_yaml: str = "", name: str = "rag") -> Path:
    """Write a model yaml, build its index under workdir and archive it into workdir/model_store/<name>."""
    config = workdir / f"{name}-test.yaml"
    config.write_text(frontend_yaml + "handler:\n" + handler_yaml)
    python = sys.executable
    subprocess.run([python, ROOT / "scripts/build_index.py", "--config", config, "--root", workdir], check=True)
    subprocess.run(
        [
            python,
            ROOT / "scripts/archive.py",
            "--config",
            config,
            "--name",
            name,
            "--root",
            workdir,
            "--store",
            workdir / "model_store",
        ],
        check=True,
    )
    return workdir / "model_store" / name


def prepare_llm_archive(workdir: Path, handler_yaml: str, frontend_yaml: str = "") -> Path:
    """Write an LLM model yaml and archive it into workdir/model_store/llm."""
    config = workdir / "llm-test.yaml"
    config.write_text(frontend_yaml + "handler:\n" + handler_yaml)
    subprocess.run(
        [
            sys.executable,
            ROOT / "scripts/archive.py",
            "--endpoint",
            "llm",
            "--config",
            config,
            "--name",
            "llm",
            "--root",
            workdir,
            "--store",
            workdir / "model_store",
        ],
        check=True,
    )
    return workdir / "model_store" / "llm"
