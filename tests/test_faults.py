"""Faults and sustained load against a real TorchServe (marker `faults`): kill -9, restart, soak, full queue.

Traffic goes to 127.0.0.1 only; every loop is bounded in count and time. Figures (failures during
recovery, recovery time, p99, RSS growth, restart ready time) are printed: run with `-s` to see them.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import psutil
import pytest

from ragserve.config import override
from ragserve_ops.server import TorchServe
from ragserve_ops.testing import FIXTURES, LLM_DIR, MODEL_DIR, Archive, serving

pytestmark = [pytest.mark.faults, pytest.mark.server, pytest.mark.model]

FRONTEND = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 8, "maxBatchDelay": 10, "responseTimeout": 60}
QUESTION = b"How do I rotate the inference token?"


@pytest.fixture(scope="module")
def server(model_dir: Path, llm_dir: Path, tmp_path_factory) -> TorchServe:
    rag = {
        "corpus": {"source": str(FIXTURES / "docs"), "chunk_size": 300, "chunk_overlap": 30},
        "model_path": str(MODEL_DIR),
        "compile": False,
    }
    llm = {"model.path": str(LLM_DIR), "generate.max_new_tokens": 8, "runtime.threads": 1}
    archives = {
        "rag": Archive("rag", rag, FRONTEND),
        # A copy with a 2-slot job queue and batch size 1, to fill it on purpose.
        "ragq": Archive("rag", rag, {"batchSize": 1, "jobQueueSize": 2, "responseTimeout": 60}),
        "llm": Archive("llm", override({}, llm), FRONTEND),
    }
    with serving(tmp_path_factory.mktemp("faults"), archives) as ts:
        yield ts


def load(server: TorchServe, model: str, body: bytes, count: int, concurrency: int) -> list[tuple[int, float]]:
    """Send count requests from concurrency threads; (status, seconds) each, status 0 for a dead socket."""

    def one(_: int) -> tuple[int, float]:
        start = time.perf_counter()
        try:
            status = server.post(model, body, timeout_s=60)[0]
        except OSError:
            status = 0
        return status, time.perf_counter() - start

    with ThreadPoolExecutor(concurrency) as pool:
        return list(pool.map(one, range(count)))


def worker_rss_mb(server: TorchServe, model: str) -> float:
    return sum(psutil.Process(pid).memory_info().rss for pid in server.worker_pids(model)) / 2**20


def model_log(server: TorchServe) -> str:
    return (server.workdir / "logs" / "model_log.log").read_text(errors="replace")


def test_killed_worker_is_restarted_and_does_not_rebuild_the_index(server: TorchServe) -> None:
    (pid,) = server.worker_pids("rag")
    with ThreadPoolExecutor(1) as pool:
        running = pool.submit(load, server, "rag", QUESTION, 300, 8)
        time.sleep(2)
        killed_at = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        results = running.result(timeout=300)
    recovered = _wait_for_success(server, timeout_s=300) - killed_at
    failed = sum(status != 200 for status, _ in results)
    print(f"\nkill -9 during load: {failed}/{len(results)} requests failed, recovered in {recovered:.1f} s")
    assert server.worker_pids("rag") != [pid]
    after = load(server, "rag", QUESTION, 50, 4)
    assert all(status == 200 for status, _ in after)
    assert "building index" not in model_log(server)  # the restarted worker loaded the archived index


def test_rag_soak_has_no_errors_and_flat_memory(server: TorchServe) -> None:
    results, rss = [], []
    for _ in range(5):  # 5 x 1000 requests at concurrency 16
        results += load(server, "rag", QUESTION, 1000, 16)
        rss.append(worker_rss_mb(server, "rag"))
    latencies = sorted(seconds for _, seconds in results)
    p99 = latencies[int(0.99 * len(latencies))]
    growth = (rss[-1] - rss[0]) / rss[0]
    print(
        f"\nsoak: {len(results)} requests, {sum(s != 200 for s, _ in results)} non-200, "
        f"median {statistics.median(latencies) * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms, RSS {rss[0]:.0f} -> "
        f"{rss[-1]:.0f} MB ({growth:+.1%})"
    )
    assert all(status == 200 for status, _ in results)
    assert growth < 0.05


def test_llm_soak_has_no_errors(server: TorchServe) -> None:
    body = json.dumps({"prompt": "Say yes.", "max_new_tokens": 4}).encode()
    results = load(server, "llm", body, 100, 4)
    p99 = sorted(s for _, s in results)[98]
    print(f"\nLLM soak: {len(results)} requests, p99 {p99 * 1e3:.0f} ms")
    assert all(status == 200 for status, _ in results)


def test_a_full_queue_answers_503_at_once_instead_of_hanging(server: TorchServe) -> None:
    results = load(server, "ragq", QUESTION, 40, 20)
    refused = [seconds for status, seconds in results if status == 503]
    print(f"\nfull queue: {len(refused)}/40 got 503, slowest refusal {max(refused, default=0) * 1e3:.0f} ms")
    assert {status for status, _ in results} <= {200, 503} and refused
    assert max(refused) < 10  # refused, not queued behind the others until a timeout


def test_restart_is_ready_without_rebuilding_the_index(server: TorchServe) -> None:
    server.stop()
    log_before = len(model_log(server))
    ready_s = server.start(["rag", "ragq", "llm"])
    print(f"\nrestart: ready in {ready_s:.1f} s")
    assert "building index" not in model_log(server)[log_before:]
    assert server.post("rag", QUESTION)[0] == 200


def _wait_for_success(server: TorchServe, timeout_s: float) -> float:
    deadline = time.perf_counter() + timeout_s
    while time.perf_counter() < deadline:
        try:
            if server.post("rag", QUESTION, timeout_s=10)[0] == 200:
                return time.perf_counter()
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"no successful request within {timeout_s} s of the kill")
