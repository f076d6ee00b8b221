"""Port blocks for private TorchServes (ragserve_ops/ports.py): no two reservations share a block, in one process or
across processes, a block with a port in use is stepped over, and wait_free gives up with the port's number."""

from __future__ import annotations

import fcntl
import socket
import subprocess
import sys

import pytest

from ragserve_ops.ports import BLOCK_SIZE, FIRST, LAST, LOCK_DIR, is_free, reserve, wait_free

HOLD = "from ragserve_ops.ports import reserve; block = reserve(); print(block.base, flush=True); input()"


def test_two_reservations_get_two_free_blocks_and_release_drops_the_lock() -> None:
    first, second = reserve(), reserve()
    try:
        assert first.base != second.base and all(FIRST <= b.base < LAST for b in (first, second))
        assert not set(first.ports) & set(second.ports) and len(first.ports) == BLOCK_SIZE
        assert all(is_free(port) for port in first.ports + second.ports)  # reserved, not bound: TorchServe binds
        first.release()
        with open(LOCK_DIR / f"{first.base}.lock") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # BlockingIOError if the block were still held
    finally:
        first.release()
        second.release()


def test_a_block_another_process_holds_is_not_taken() -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLD], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        held = int(holder.stdout.readline())
        mine = reserve()
        assert mine.base != held
        mine.release()
    finally:
        holder.communicate("\n", timeout=30)  # it exits, and its lock goes with it


def test_a_block_with_a_port_in_use_is_stepped_over() -> None:
    probe = reserve()
    probe.release()
    with socket.socket() as squatter:  # something outside the allocator, on the block's gRPC inference port
        squatter.bind(("127.0.0.1", probe.base + 3))
        squatter.listen()
        block = reserve()
        try:
            assert block.base != probe.base and probe.base + 3 not in block.ports
        finally:
            block.release()


def test_wait_free_names_the_port_still_held() -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with pytest.raises(RuntimeError, match=str(port)):
            wait_free([port], timeout_s=0.5)
    wait_free([port], timeout_s=10)  # closed: free again at once
