"""The private TorchServe a benchmark starts: ragserve_ops.server's `TorchServe`, plus what runs one after another need.

Public: `BenchServer`. On top of the harness it remembers the frontend process it started (so only that one and its
workers are ever killed), lists the workers, waits until a given number of them are READY, and stops and waits until
the frontend and its workers have exited: `torchserve --stop` returns first, and the next start on the same ports
would fail. No archive building here (model_archive.py).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import psutil

from ragserve_ops.client import call, count_ready, failure_reason, is_running
from ragserve_ops.server import TorchServe


@dataclass
class BenchServer(TorchServe):
    """TorchServe in workdir on port..port+4, with its frontend process tracked from launch to stop."""

    java: psutil.Process | None = None  # the frontend this object started (only it and its workers get killed)

    def launch(self, models: list[str]) -> None:
        since = time.monotonic()
        super().launch(models)
        self.java = self._started_java(since)

    def describe(self, model: str) -> list[dict[str, Any]]:
        """The management API's model description ([] while the server is starting)."""
        try:
            status, _, text = call(
                f"{self.management_url}/models/{model}", keys=self.keys, kind="management", timeout_s=5
            )
        except (SystemExit, OSError):
            return []  # still starting: no key file or no listener yet
        return json.loads(text) if status == 200 else []

    def start_workers(self, model: str, workers: int, timeout_s: float) -> float:
        """Start with model and wait until `workers` workers are READY; returns seconds. RuntimeError on failure."""
        start = time.monotonic()
        self.launch([model])
        while count_ready(self.describe(model)) < workers:
            self._check_alive(start, timeout_s)
            time.sleep(1)
        return time.monotonic() - start

    def workers(self) -> list[psutil.Process]:
        try:
            return self.java.children() if self.java else []
        except psutil.Error:
            return []

    def stop_and_wait(self, timeout_s: float = 60) -> None:
        """`torchserve --stop`, then wait for the frontend and its workers to exit; kill what outlives timeout_s."""
        procs = self.workers() + ([self.java] if self.java else [])
        self.stop()
        _, alive = psutil.wait_procs(procs, timeout=timeout_s)
        for proc in alive:
            proc.kill()
        psutil.wait_procs(alive, timeout=10)

    def _check_alive(self, start: float, timeout_s: float) -> None:
        if self.java is not None and not is_running(self.java.pid):
            raise RuntimeError(f"TorchServe exited while starting: {failure_reason(self.log_dir)}")
        log = self.log_dir / "ts_log.log"
        if log.exists() and "Backend worker process died" in log.read_text(errors="replace"):
            raise RuntimeError(f"a worker died while starting: see {self.log_dir / 'model_log.log'}")
        if time.monotonic() - start > timeout_s:
            raise RuntimeError(f"workers not ready after {timeout_s:.0f} s: see {self.log_dir}")

    def _started_java(self, since: float) -> psutil.Process | None:
        """The java process named by this workdir's pid file, if it was started after `since`."""
        try:
            proc = psutil.Process(int((self.workdir / "tmp" / ".model_server.pid").read_text().strip()))
            born = proc.create_time() - (time.time() - time.monotonic())
        except (OSError, ValueError, psutil.Error):
            return None
        return proc if born >= since - 5 else None
