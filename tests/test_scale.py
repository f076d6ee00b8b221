"""`make test-scale`: two TorchServe replicas of one archive behind haproxy, one killed under load, then
both moved to a refreshed index version under load.

The local proof of docs/scaling.md: two replicas on free port blocks of 127.0.0.1 (token auth off, as
inside the cluster network), serving the same model store and index without writing to it; haproxy
on a third block's port checks one shared credential, health-checks the management API's READY and
retries the idempotent RAG POST.
Prints the figures: req/s with one and two replicas, failed requests during a kill -9,
switch-over and rejoin times. About 3 minutes on 2 cores.
"""

from __future__ import annotations

import hashlib
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from multiprocessing.pool import ThreadPool
from pathlib import Path

import psutil
import pytest

from ragserve_ops.client import is_ready, request, server_pid, wait_ready
from ragserve_ops.ports import reserve, wait_free
from ragserve_ops.server import TorchServe, prepare_rag_archive
from ragserve_ops.testing import ROOT

pytestmark = [pytest.mark.scale, pytest.mark.server, pytest.mark.model]

FIXTURES = Path(__file__).resolve().parent / "fixtures"
QUESTION = b"How do I rotate the inference token?"
FRONTEND = {"minWorkers": 1, "maxWorkers": 1, "batchSize": 4, "maxBatchDelay": 10, "responseTimeout": 60}
# Inside the pod network the gateway is the only client; see docs/scaling.md for the threat model.
REPLICA_PROPERTIES = {"disable_token_authorization": "true"}


@dataclass
class Gateway:
    process: subprocess.Popen
    socket_path: Path
    token: str
    address: str  # host:port it listens on

    @property
    def url(self) -> str:
        return f"http://{self.address}/predictions/rag"

    def admin(self, command: str) -> str:
        """One command on haproxy's stats socket (show stat, disable server ...)."""
        with socket.socket(socket.AF_UNIX) as conn:
            conn.connect(str(self.socket_path))
            conn.sendall(command.encode() + b"\n")
            return b"".join(iter(lambda: conn.recv(65536), b"")).decode()

    def servers(self) -> dict[str, dict[str, str]]:
        """Backend rag's servers: name -> their `show stat` row (status, stot = requests sent, ...)."""
        lines = self.admin("show stat").splitlines()
        header = lines[0].lstrip("# ").split(",")
        rows = [dict(zip(header, line.split(","), strict=False)) for line in lines[1:] if line]
        return {row["svname"]: row for row in rows if row["pxname"] == "rag" and row["svname"].startswith("r")}

    def wait_status(self, server: str, status: str, timeout_s: float = 120) -> float:
        start = time.monotonic()
        while self.servers()[server]["status"] != status:
            assert time.monotonic() - start < timeout_s, f"{server} not {status} after {timeout_s} s"
            time.sleep(0.05)
        return time.monotonic() - start


def digest(folder: Path) -> str:
    """Every path, size and content under folder: proves nothing wrote to the shared archive."""
    sha = hashlib.sha256()
    for path in sorted(folder.rglob("*")):
        sha.update(str(path.relative_to(folder)).encode())
        if path.is_file():
            sha.update(path.read_bytes())
    return sha.hexdigest()


def ab(gateway: Gateway, requests: int, concurrency: int, payload: Path) -> dict[str, float]:
    """ab through the gateway; complete, failed, non-2xx requests and req/s from its summary."""
    cmd = ["ab", "-r", "-s", "60", "-n", str(requests), "-c", str(concurrency), "-p", str(payload)]
    cmd += ["-T", "text/plain", "-H", f"Authorization: Bearer {gateway.token}", gateway.url]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    figures = {}
    for name, label in (("complete", "Complete requests"), ("failed", "Failed requests"), ("non2xx", "Non-2xx")):
        found = re.search(rf"^{label}[^:]*:\s+(\d+)", text, re.M)
        figures[name] = int(found.group(1)) if found else 0  # ab omits Non-2xx when there are none
    figures["rps"] = float(re.search(r"^Requests per second:\s+([\d.]+)", text, re.M).group(1))
    # ab also counts as failed a response whose length differs from the first one's ("Length"): not a
    # failure when the content may change (a new index version), so it is reported apart.
    length = re.search(r"Length: (\d+)", text)
    figures["length"] = int(length.group(1)) if length else 0
    return figures


@pytest.fixture(scope="module")
def store(tmp_path_factory, model_dir: Path) -> Path:
    """One archive and index, built once; the replicas only read it."""
    workdir = tmp_path_factory.mktemp("scale")
    shutil.copytree(FIXTURES / "docs", workdir / "docs")  # a copy: the refresh test edits it
    rag = {
        "corpus": {"source": "docs", "chunk_size": 300, "chunk_overlap": 30},
        "model_path": str(model_dir),
        "compile": False,
        "index": {"follow_s": 0.5},
    }
    prepare_rag_archive(workdir, rag, FRONTEND)
    return workdir / "model_store"


@pytest.fixture(scope="module")
def replicas(store: Path, tmp_path_factory) -> Iterator[list[TorchServe]]:
    servers = []
    for replica in (1, 2):
        workdir = tmp_path_factory.mktemp(f"replica{replica}")
        (workdir / "model_store").symlink_to(store)
        # One thread per worker: one replica then has one core and two replicas two, on this 2-core machine.
        servers.append(TorchServe(workdir, properties=dict(REPLICA_PROPERTIES), environment={"OMP_NUM_THREADS": "1"}))
    try:
        for server in servers:  # both JVMs and workers start at once, then both are waited for
            server.launch(["rag"])
        for server in servers:
            wait_ready(["rag"], 600, server.keys, server.log_dir, server.workdir / "tmp", token_auth=False)
        yield servers
    finally:
        for server in servers:
            server.stop()
            server.release()
        # TorchServe links each loaded model under the JVM's /tmp/models/<uuid>/ and removes it on
        # --stop; the replica killed with -9 leaves its link behind.
        for link in Path("/tmp/models").glob("*/rag"):
            if link.is_symlink() and link.resolve().is_relative_to(store.resolve()):
                shutil.rmtree(link.parent)


@pytest.fixture(scope="module")
def gateway(replicas: list[TorchServe], tmp_path_factory) -> Iterator[Gateway]:
    workdir = tmp_path_factory.mktemp("gateway")
    block = reserve()  # the gateway listens on its first port
    env = {
        **os.environ,
        "GATEWAY_BIND": f"127.0.0.1:{block.base}",
        "GATEWAY_TOKEN": secrets.token_urlsafe(24),
        "HAPROXY_SOCKET": str(workdir / "admin.sock"),
    }
    for number, server in enumerate(replicas, start=1):
        env[f"REPLICA_{number}"] = f"127.0.0.1:{server.port}"
        env[f"REPLICA_{number}_MANAGEMENT"] = str(server.port + 1)
    if shutil.which("haproxy") is None:
        pytest.fail("haproxy is missing: scripts/install_system.sh installs it")
    process = subprocess.Popen(["haproxy", "-db", "-f", str(FIXTURES / "haproxy-scale.cfg")], env=env)
    gw = Gateway(process, workdir / "admin.sock", env["GATEWAY_TOKEN"], env["GATEWAY_BIND"])
    try:
        while not gw.socket_path.exists():
            time.sleep(0.05)
        for name in ("r1", "r2"):
            gw.wait_status(name, "UP", timeout_s=30)
        yield gw
    finally:
        process.terminate()
        process.wait(timeout=10)
        block.release()


@pytest.fixture(scope="module")
def payload(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ab") / "question.txt"
    path.write_bytes(QUESTION)
    return path


def test_gateway_takes_only_the_shared_credential_and_probes_need_none(gateway: Gateway, replicas) -> None:
    assert request(gateway.url, QUESTION)[0] == 401
    assert request(gateway.url, QUESTION, key="not-the-token")[0] == 401
    status, _, text = request(gateway.url, QUESTION, key=gateway.token)
    assert status == 200 and "rotate" in text
    for server in replicas:  # what the pods' readiness and liveness probes ask, without a key
        assert is_ready("rag", server.management_url)
        assert request(f"http://127.0.0.1:{server.port + 2}/metrics")[0] == 200


def test_both_replicas_serve_from_one_archive_without_writing_it(gateway: Gateway, store: Path, payload: Path) -> None:
    before = digest(store)
    ab(gateway, 20, 4, payload)  # each worker's first requests are slower: not part of the figure
    # Concurrency 8: each replica still fills its batches of 4 when there are two of them.
    gateway.admin("disable server rag/r2")
    try:
        one = ab(gateway, 160, 8, payload)
    finally:
        gateway.admin("enable server rag/r2")
    gateway.wait_status("r2", "UP")
    sent = {name: int(row["stot"]) for name, row in gateway.servers().items()}
    two = ab(gateway, 160, 8, payload)
    after = {name: int(row["stot"]) for name, row in gateway.servers().items()}
    assert one["failed"] == one["non2xx"] == two["failed"] == two["non2xx"] == 0
    assert all(after[name] - sent[name] >= 40 for name in sent), (sent, after)  # round robin reaches both
    assert digest(store) == before
    print(f"\nreq/s through the gateway, ab -n 160 -c 8: one replica {one['rps']:.1f}, two replicas {two['rps']:.1f}")


def test_kill_9_of_a_replica_under_load_loses_no_request_and_it_rejoins(
    gateway: Gateway, replicas: list[TorchServe], payload: Path
) -> None:
    gateway.wait_status("r2", "UP")
    victim = replicas[0]
    frontend = psutil.Process(server_pid(victim.workdir / "tmp"))
    workers = frontend.children(recursive=True)
    try:
        with ThreadPool(1) as pool:
            result = pool.apply_async(ab, (gateway, 300, 4, payload))
            time.sleep(4)  # the load is flowing to both replicas
            frontend.send_signal(signal.SIGKILL)
            switch_s = gateway.wait_status("r1", "DOWN", timeout_s=30)
            sent_while_down = int(gateway.servers()["r1"]["stot"])
            figures = result.get(timeout=300)
    finally:
        for worker in workers:  # the killed frontend's workers lose their parent; they are ours to end
            if worker.is_running():
                worker.kill()
    assert int(gateway.servers()["r1"]["stot"]) == sent_while_down  # after DOWN, only the survivor gets traffic
    # A SIGKILLed JVM releases its sockets only when its exit completes, which can lag the kill by
    # seconds on 2 busy cores: restarting earlier failed once with "Failed to bind to address".
    wait_free(victim.ports)
    restart_s = victim.start(["rag"], timeout_s=600)
    rejoin_s = gateway.wait_status("r1", "UP", timeout_s=60)
    served = int(gateway.servers()["r1"]["stot"])
    after = ab(gateway, 40, 4, payload)
    print(
        f"\nkill -9 of replica 1 under ab -n 300 -c 4: {figures['complete']} complete, {figures['failed']} failed, "
        f"{figures['non2xx']} non-2xx; haproxy marked it DOWN {switch_s:.2f} s after the kill; "
        f"restarted, its worker READY in {restart_s:.1f} s, UP in haproxy {rejoin_s:.2f} s later, then served again"
    )
    assert figures["failed"] == figures["non2xx"] == 0
    assert figures["complete"] == 300
    assert after["failed"] == after["non2xx"] == 0
    assert int(gateway.servers()["r1"]["stot"]) > served  # the restarted replica takes traffic again


def test_both_replicas_move_to_a_refreshed_version_under_load_with_no_failed_request(
    gateway: Gateway, replicas: list[TorchServe], store: Path, payload: Path
) -> None:
    """The replicas read one index store (a shared volume in a cluster): `make refresh` publishes a version
    and each replica's workers swap to it between batches, while ab keeps asking through the gateway."""
    for name in ("r1", "r2"):
        gateway.wait_status(name, "UP")
    sentence = "The zebra server was renamed Okapi in the autumn release."
    question = b"What was the zebra server renamed to in the autumn release?"
    urls = [f"http://127.0.0.1:{server.port}/predictions/rag" for server in replicas]  # no key inside the cluster
    assert all(sentence not in request(url, question)[2] for url in urls)
    workdir = store.parent
    swapped = threading.Event()

    def load() -> list[dict[str, float]]:
        """Rounds of ab -n 100 -c 4 until both replicas have swapped, and one more round after."""
        rounds = [ab(gateway, 100, 4, payload)]
        while not swapped.is_set():
            rounds.append(ab(gateway, 100, 4, payload))
        return [*rounds, ab(gateway, 100, 4, payload)]

    with ThreadPool(1) as pool:
        result = pool.apply_async(load)
        time.sleep(2)  # the load is flowing to both replicas
        tokens = workdir / "docs" / "tokens.md"
        tokens.write_text(tokens.read_text() + f"\n{sentence}\n")
        build = [sys.executable, str(ROOT / "scripts/build_index.py"), "--config", str(workdir / "rag-test.yaml")]
        subprocess.run(build + ["--root", str(workdir)], check=True, capture_output=True, timeout=300)
        published, waits = time.monotonic(), []
        try:
            for url in urls:
                while sentence not in request(url, question)[2]:
                    assert time.monotonic() - published < 60, f"{url} did not swap within 60 s"
                    time.sleep(0.2)
                waits.append(time.monotonic() - published)
        finally:
            swapped.set()
        rounds = result.get(timeout=300)
    total = {name: sum(r[name] for r in rounds) for name in ("complete", "failed", "length", "non2xx")}
    failed = total["failed"] - total["length"]  # connect, receive and exception failures
    print(
        f"\nrefresh under ab -c 4 through the gateway: {total['complete']} complete, {failed} failed, "
        f"{total['non2xx']} non-2xx ({total['length']} of another length than the first: the new version's "
        f"prompt); the new sentence served by both replicas {max(waits):.2f} s after publish"
    )
    assert failed == total["non2xx"] == 0 and total["complete"] == 100 * len(rounds) >= 300
