"""Free port blocks for private TorchServes (tests and benchmarks), so no two pick the same ports.

Public: PortBlock, BLOCK_SIZE, reserve, is_free, wait_free. A block is BLOCK_SIZE TCP ports on 127.0.0.1
(HTTP inference, management, metrics; gRPC inference, management) at a multiple of STRIDE in [FIRST, LAST):
below Linux's ephemeral range, away from `make serve`'s 8080-8082, 7070-7071 and worker sockets 9000+. A
process holds its block with an flock on LOCK_DIR/<base>.lock (dropped when it closes the file or exits, so
no lock outlives a crash), and takes a block only when every port binds: servers started otherwise are
stepped around too.
"""

from __future__ import annotations

import fcntl
import socket
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

BLOCK_SIZE = 5
# TorchServe names worker sockets /tmp/.ts.sock.<initial_worker_port + n>: with initial_worker_port at base + 1000
# (server.py), a block also owns worker socket numbers base+1000..base+1099, apart from every other block's.
STRIDE = 100
FIRST, LAST = 21000, 28000
LOCK_DIR = Path("/tmp/ragserve-ports")  # /tmp whatever TMPDIR is: one lock folder for every process on the host


@dataclass
class PortBlock:
    """BLOCK_SIZE consecutive free ports from base, held (against other reservations) until release()."""

    base: int
    lock: IO[str] | None

    @property
    def ports(self) -> list[int]:
        return list(range(self.base, self.base + BLOCK_SIZE))

    def release(self) -> None:
        if self.lock is not None:
            self.lock.close()  # closing the file drops the flock
            self.lock = None


def is_free(port: int) -> bool:
    """Whether port binds on 127.0.0.1 now, as TorchServe binds it (SO_REUSEADDR: a TIME_WAIT socket does not count)."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def reserve() -> PortBlock:
    """The first block no other process holds and whose ports all bind; RuntimeError when none is left."""
    LOCK_DIR.mkdir(exist_ok=True)
    for base in range(FIRST, LAST, STRIDE):
        lock = open(LOCK_DIR / f"{base}.lock", "w")  # held open: the flock lives as long as the file
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.close()
            continue
        block = PortBlock(base, lock)
        if all(is_free(port) for port in block.ports):
            return block
        block.release()
    raise RuntimeError(f"no free block of {BLOCK_SIZE} ports in {FIRST}-{LAST} (locks in {LOCK_DIR})")


def wait_free(ports: list[int], timeout_s: float = 60) -> None:
    """Return once every port binds again on 127.0.0.1; RuntimeError naming the port still held after timeout_s."""
    deadline = time.monotonic() + timeout_s
    for port in ports:
        while not is_free(port):
            if time.monotonic() > deadline:
                raise RuntimeError(f"port {port} is still in use {timeout_s:.0f} s after its server stopped")
            time.sleep(0.2)
