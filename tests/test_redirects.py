"""Issue 33 item 13: urllib follows redirects with the request's headers, Authorization included, to any host.
The project's urllib clients (api/ragclient.py, ragserve_ops/client.py) drop it when a redirect leaves the origin."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator

import pytest

from ragserve.api.openai_chat import Grounding
from ragserve.api.ragclient import RAGClient
from ragserve_ops.client import request

REPLY = json.dumps({"prompt": "p", "sources": []})


class Recorder(http.server.BaseHTTPRequestHandler):
    """Redirects /away to `target` (another origin) and /near to /end on itself; records who sent a key."""

    target = ""
    seen: list[tuple[str, str | None]] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        if self.path in ("/away", "/near"):
            self.send_response(302)
            self.send_header("Location", type(self).target if self.path == "/away" else "/end")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(REPLY)))
        self.end_headers()
        self.wfile.write(REPLY.encode())

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def hosts(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The first server's base URL, as 127.0.0.1; /away sends the client to a second one named localhost."""
    monkeypatch.setattr(Recorder, "seen", [])
    servers = [http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder) for _ in range(2)]
    for server in servers:
        threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setattr(Recorder, "target", f"http://localhost:{servers[1].server_address[1]}/end")
    yield f"http://127.0.0.1:{servers[0].server_address[1]}"
    for server in servers:
        server.shutdown()
        server.server_close()


def test_the_rag_client_drops_authorization_on_a_redirect_to_another_host(hosts: str) -> None:
    RAGClient(f"{hosts}/away", timeout_s=5).ask("q", Grounding(), "Bearer secret")
    RAGClient(f"{hosts}/near", timeout_s=5).ask("q", Grounding(), "Bearer secret")
    assert Recorder.seen == [("/end", None), ("/end", "Bearer secret")]  # kept on its own host only


def test_the_ops_client_drops_authorization_on_a_redirect_to_another_host(hosts: str) -> None:
    assert request(f"{hosts}/away", key="secret", timeout_s=5)[0] == 200
    assert request(f"{hosts}/near", key="secret", timeout_s=5)[0] == 200
    assert Recorder.seen == [("/end", None), ("/end", "Bearer secret")]
