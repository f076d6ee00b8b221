"""Issue 33 items 11 and 12 at the refresh: pages kept through a failing or rate-limiting server are named in the
report and in `make index-status`; validators that changed without the text are saved for the next refresh."""

from __future__ import annotations

import http.server
import importlib.util
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from ragserve.config import Config
from ragserve.index.builder import refresh
from ragserve.index.line import IndexLine

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.model
TEXT = {
    "/s/a": "The aardvark digs burrows at night and eats ants and termites by the thousand.",
    "/s/b": "The badger keeps a clean sett, changing its bedding of grass and leaves often.",
}


class Tagged(http.server.BaseHTTPRequestHandler):
    """Two pages with an ETag the test changes (a CDN re-encoding them, a build stamp) while their text stays;
    If-None-Match with the current one is a 304. `answers`: (status, headers) a path gets instead."""

    etag = '"1"'
    statuses: Counter = Counter()
    answers: dict[str, tuple[int, dict[str, str]]] = {}

    def log_message(self, *args: object) -> None:
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        cls = type(self)
        if self.path == "/robots.txt":  # none (the crawl asks for it first): not a page, not counted
            self.send_error(404)
            return
        status, headers = cls.answers.get(self.path, (200, {}))
        if self.path not in TEXT:
            status = 404
        elif status == 200 and self.headers.get("If-None-Match") == cls.etag:
            status = 304
        body = b""
        if status == 200:
            link = '<a href="/s/b">b</a>' if self.path == "/s/a" else ""
            body = f"<html><body><article><p>{TEXT[self.path]}</p>{link}</article></body></html>".encode()
            headers = {"Content-Type": "text/html", "ETag": cls.etag}
        cls.statuses[status] += 1
        self.send_response(status)
        for name, value in {**headers, "Content-Length": str(len(body))}.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def tagged(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(Tagged, "etag", '"1"')
    monkeypatch.setattr(Tagged, "statuses", Counter())
    monkeypatch.setattr(Tagged, "answers", {})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Tagged)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def config(source: str, index_dir: Path, model_dir: Path) -> Config:
    return Config.from_mapping(
        {
            "corpus": {"source": source, "chunk_size": 200, "chunk_overlap": 20, "max_depth": 2},
            "embedding": {"model_path": str(model_dir)},
            "compile": {"enabled": False},
            "index": {"dir": str(index_dir), "follow_s": 0},
        },
        index_dir,
    )


def test_a_changed_etag_with_the_same_text_is_saved_so_the_next_refresh_revalidates(
    tagged: str, tmp_path: Path, model_dir, encoder
) -> None:
    cfg = config(f"{tagged}/s/a", tmp_path / "index", model_dir)
    first = refresh(cfg, lambda: encoder)
    assert Tagged.statuses == Counter({200: 2})
    Tagged.etag = '"2"'  # new validators, same text: the same version, nothing written
    Tagged.statuses.clear()
    same = refresh(cfg, lambda: pytest.fail("the encoder was loaded"))
    assert same.version == first.version and not same.written and Tagged.statuses == Counter({200: 2})
    Tagged.statuses.clear()
    again = refresh(cfg, lambda: pytest.fail("the encoder was loaded"))
    assert again.version == first.version and Tagged.statuses == Counter({304: 2}), Tagged.statuses


def test_pages_kept_through_a_rate_limiting_server_are_named_in_the_report_and_the_status(
    tagged: str, tmp_path: Path, model_dir, encoder, capsys: pytest.CaptureFixture[str]
) -> None:
    cfg = config(f"{tagged}/s/a", tmp_path / "index", model_dir)
    first = refresh(cfg, lambda: encoder)
    Tagged.answers["/s/b"] = (429, {"Retry-After": "3600"})
    report = refresh(cfg, lambda: pytest.fail("the encoder was loaded"))
    assert report.version == first.version and report.removed == []  # kept, not removed
    assert report.kept == {f"{tagged}/s/b": "HTTP 429 (Retry-After 3600 s)"}
    assert f"{tagged}/s/b (HTTP 429" in report.summary() and "rate-limiting" in report.summary()

    spec = importlib.util.spec_from_file_location("build_index", ROOT / "scripts" / "build_index.py")
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    script.status(IndexLine.of(cfg))  # what `make index-status` prints
    out = capsys.readouterr().out
    assert "1 page kept because its server was failing or rate-limiting" in out and f"{tagged}/s/b" in out, out

    Tagged.answers.clear()  # the server answers again: nothing kept, and the status says so
    assert refresh(cfg, lambda: pytest.fail("the encoder was loaded")).kept == {}
    script.status(IndexLine.of(cfg))
    assert "kept because" not in capsys.readouterr().out
