"""The private TorchServe harness (ragserve_ops/server.py, ragserve_ops.testing.serving) and the key handling of the
clients (ragserve_ops/client.py).

Real TorchServe servers without models, on free port blocks (ragserve_ops/ports.py): they start in seconds.
"""

from __future__ import annotations

import json
import socket
import time
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path

import pytest

from ragserve_ops.client import call, fresh_key, is_serving, request
from ragserve_ops.ports import is_free
from ragserve_ops.server import GRAVITON_ENV, TorchServe, platform_env
from ragserve_ops.testing import serving

# `make serve`'s ports: HTTP inference, management, metrics; gRPC inference, management.
DEFAULT_PORTS = (8080, 8081, 8082, 7070, 7071)


def listening(port: int) -> bool:
    with closing(socket.socket()) as sock:
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def default_ports_held(tmp_path: Path) -> Iterator[None]:
    """The default ports in use: by `make run`'s server when it is up, else by a TorchServe started on them."""
    held = [listening(port) for port in DEFAULT_PORTS]
    if all(held):
        yield
        return
    if any(held):
        pytest.skip(f"some of the default ports {DEFAULT_PORTS} are in use by something else: {held}")
    defaults = {"grpc_inference_port": "7070", "grpc_management_port": "7071", "initial_worker_port": "9000"}
    with serving(tmp_path / "default", {}, port=8080, properties=defaults):
        assert all(listening(port) for port in DEFAULT_PORTS)
        yield


@pytest.mark.server
def test_a_private_server_starts_beside_one_on_the_default_ports(default_ports_held, tmp_path: Path) -> None:
    with serving(tmp_path / "private", {}) as server:
        status, _, text = call(f"{server.inference_url}/ping", keys=server.keys)
        assert status == 200 and json.loads(text)["status"] == "Healthy"
        assert not set(server.ports) & set(DEFAULT_PORTS)
        assert all(listening(port) for port in server.ports)  # its own HTTP and gRPC ports


@pytest.mark.server
def test_a_stopped_server_has_freed_its_ports_and_restarts_on_them_at_once(tmp_path: Path) -> None:
    with serving(tmp_path, {}) as server:
        server.stop()  # returns once the frontend has exited, not when SIGTERM is sent
        assert server.processes() == [] and all(is_free(port) for port in server.ports)
        server.start([], timeout_s=120)
        assert call(f"{server.inference_url}/ping", keys=server.keys)[0] == 200


@pytest.mark.server
def test_a_server_that_cannot_bind_fails_fast_with_the_log_line(tmp_path: Path) -> None:
    (tmp_path / "model_store").mkdir()
    server = TorchServe(tmp_path)
    try:
        with closing(socket.socket()) as squatter:  # hold its gRPC inference port, as `make serve` held 7070
            squatter.bind(("127.0.0.1", server.port + 3))
            squatter.listen()
            with pytest.raises(SystemExit) as failure:
                server.start([], timeout_s=600)
    finally:
        server.stop()
        server.release()
    # Only the exit check words it this way; the timeout path would say "not ready after 600 s".
    message = str(failure.value)
    assert "exited while starting" in message and "Failed to bind" in message, message


@pytest.mark.server
def test_clients_renew_an_expired_key_with_the_api_key(tmp_path: Path) -> None:
    with serving(tmp_path, {}, properties={"token_expiration_min": "0.05"}) as server:  # keys live 3 s
        old = {kind: server.keys.get(kind) for kind in ("inference", "management")}
        deadline = time.monotonic() + 30
        while request(f"{server.inference_url}/ping", key=old["inference"])[0] == 200:
            assert time.monotonic() < deadline, "the inference key did not expire"
            time.sleep(0.5)
        status, _, text = request(f"{server.inference_url}/ping", key=old["inference"])
        assert status == 400 and "InvalidKeyException" in text  # expired: refused like a wrong key
        assert call(f"{server.inference_url}/ping", keys=server.keys)[0] == 200
        assert call(f"{server.management_url}/models", keys=server.keys, kind="management")[0] == 200
        assert {kind: server.keys.get(kind) for kind in old} != old  # key_file.json holds the new keys
        assert fresh_key(server.inference_url, server.keys) == server.keys.get("inference")


@pytest.mark.parametrize(
    ("statuses", "min_workers", "all_workers", "expected"),
    [
        (["READY"], 1, False, True),
        (["READY", "UNLOADING"], 2, False, True),
        (["READY", "UNLOADING"], 2, True, False),
        (["READY", "READY"], 2, True, True),
        ([], 1, False, False),
    ],
)
def test_a_model_serves_with_one_ready_worker_or_with_all_its_min_workers(
    statuses: list[str], min_workers: int, all_workers: bool, expected: bool
) -> None:
    description = [{"minWorkers": min_workers, "workers": [{"status": status} for status in statuses]}]
    assert is_serving(description, all_workers) is expected


def test_the_harness_applies_the_graviton_settings_serve_sh_applies(tmp_path: Path) -> None:
    settings = platform_env("aarch64")
    assert settings["DNNL_DEFAULT_FPMATH_MODE"] == "BF16" and len(settings) == 4
    assert platform_env("x86_64") == {}
    serve_sh = (GRAVITON_ENV.parent.parent / "scripts" / "serve.sh").read_text()
    assert "source configs/graviton.env" in serve_sh  # one file for production and the harness
    server = TorchServe(tmp_path)
    assert all(server.env.get(name) == value for name, value in platform_env().items())
