"""Corpus faults at index build: bad pages are skipped with a warning naming them, limits hold."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import requests

from ragserve.ingest.crawl import CrawlError, crawl
from ragserve_ops.testing import Replying, http_site

LINKS = [
    "/site/b",
    "/site/hang",
    "/site/500",
    "/site/404",
    "/site/loop",
    "/site/offsite",
    "/site/pdf",
    "/site/script.js",
    "/site/big",
    "/site/latin1",
    "file:///etc/passwd",
    "javascript:alert(1)",
    "mailto:a@b.c",
    "http://other.invalid/site/x",
    "/elsewhere/outside-prefix",
]
PAGE_A = "<html><head><title>A</title></head><body><article><p>Page A text.</p>{}</article></body></html>".format(
    "".join(f'<a href="{link}">x</a>' for link in LINKS)
)
PAGE_B = '<html><body><article><p>Page B text.</p><a href="/site/a">back to A (a cycle)</a></article></body></html>'


class FaultyHandler(Replying):
    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        routes = {
            "/site/a": lambda: self.reply(200, "text/html", PAGE_A.encode()),
            "/site/b": lambda: self.reply(200, "text/html; charset=utf-8", PAGE_B.encode()),
            "/site/hang": self._hang,
            "/site/500": lambda: self.reply(500, "text/html", b"boom"),
            "/site/loop": lambda: self._redirect("/site/loop"),
            "/site/offsite": lambda: self._redirect("http://example.invalid/"),
            "/site/pdf": lambda: self.reply(200, "application/pdf", b"%PDF-1.4"),
            "/site/script.js": lambda: self.reply(200, "application/javascript", b"var x;"),
            "/site/big": self._big,
            "/site/latin1": lambda: self.reply(200, "text/html; charset=utf-8", b"<p>caf\xe9 \xff\xfe text</p>"),
        }
        routes.get(self.path, lambda: self.reply(404, "text/html", b"not found"))()

    def _redirect(self, location: str) -> None:
        self.send_response(302)
        self.send_header("Location", location)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _hang(self) -> None:
        # No answer until the crawler gives up (its timeout_s) and hangs up: EOF. An answer written later (this used
        # to sleep 3 s, then write) raised BrokenPipeError in a server thread during whichever test ran then.
        self.connection.settimeout(30)  # a crawler that never gives up: handle_one_request ends on the TimeoutError
        self.rfile.read(1)

    def _big(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        try:
            for _ in range(50):  # 50 MB, sent lazily: the crawler must stop reading at its cap
                self.wfile.write(b"<p>" + b"x" * (1 << 20) + b"</p>")
        except (BrokenPipeError, ConnectionResetError):
            pass


@pytest.fixture(scope="module")
def faulty_url() -> Iterator[str]:
    with http_site(FaultyHandler) as url:
        yield url


def test_bad_pages_are_skipped_with_a_warning_and_good_ones_kept(faulty_url: str, caplog) -> None:
    caplog.set_level(logging.WARNING, logger="ragserve.ingest.crawl")
    pages = crawl(f"{faulty_url}/site/a", max_depth=2, max_pages=50, max_page_bytes=2_000_000, timeout_s=1)
    assert [p.url.removeprefix(faulty_url) for p in pages] == ["/site/a", "/site/b", "/site/latin1"]
    assert "caf" in pages[2].text  # invalid bytes replaced, not fatal
    warnings = caplog.text
    for path, reason in [
        ("/site/hang", "Timeout"),
        ("/site/500", "HTTP 500"),
        ("/site/404", "HTTP 404"),
        ("/site/loop", "redirects"),
        ("/site/offsite", "outside"),
        ("/site/pdf", "not HTML"),
        ("/site/script.js", "not HTML"),
        ("/site/big", "max_page_bytes"),
    ]:
        assert f"{faulty_url}{path}" in warnings and reason in warnings, path


def test_nothing_usable_fails_with_the_url_and_causes(faulty_url: str) -> None:
    with pytest.raises(CrawlError, match=r"/site/500: HTTP 500"):
        crawl(f"{faulty_url}/site/500", max_depth=1, max_pages=5, max_page_bytes=1000, timeout_s=1)


def test_connection_refused_names_the_url() -> None:
    with pytest.raises(CrawlError, match=r"127\.0\.0\.1:9/x.*ConnectionError"):
        crawl("http://127.0.0.1:9/x", max_depth=1, max_pages=5, max_page_bytes=1000, timeout_s=1)


def test_public_start_url_never_fetches_private_addresses(monkeypatch) -> None:
    from ragserve.ingest import crawl as crawl_module

    # DNS rebinding: the host looks public when the crawl starts, then resolves to a private address.
    monkeypatch.setattr(requests.Session, "get", lambda session, url, **kwargs: pytest.fail(f"{url} was asked"))
    for robots in (False, True):  # the page's hop; robots.txt's, asked before it
        answers = iter([False, True, True, True])
        monkeypatch.setattr(crawl_module, "_is_private", lambda host, answers=answers: next(answers))
        with pytest.raises(CrawlError, match="private or loopback"):
            crawl("http://example.org/docs", 0, 1, 1000, 1, robots=robots)


class Limiting(Replying):
    """A site whose pages answer 200 until `answers` says otherwise: (status, headers) per path, used once each
    when listed in `once`."""

    answers: dict[str, tuple[int, dict[str, str]]] = {}
    once: set[str] = set()
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).hits.append(self.path)
        status, headers = type(self).answers.get(self.path, (200, {}))
        if self.path in type(self).once:
            type(self).once.discard(self.path)
            type(self).answers.pop(self.path)
        links = "".join(f'<a href="/t/{name}">x</a>' for name in ("429", "408", "waf", "403", "later"))
        body = f"<html><body><article><p>Page {self.path} text.</p>{links}</article></body></html>".encode()
        body = body if status == 200 else b"<p>go away</p>"
        self.reply(status, "text/html", body, headers)


@pytest.fixture
def limiting_url(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(Limiting, "answers", {})
    monkeypatch.setattr(Limiting, "once", set())
    monkeypatch.setattr(Limiting, "hits", [])
    with http_site(Limiting) as url:
        yield url


def test_a_rate_limited_or_waf_blocked_known_page_is_kept_and_says_why(limiting_url: str) -> None:
    """Issue 33 item 11: 429, 408 and a WAF's 403 are the server failing or limiting us, not the page gone."""
    first = crawl(f"{limiting_url}/t/a", max_depth=1, max_pages=20, max_page_bytes=100_000, timeout_s=2)
    Limiting.answers.update(
        {
            "/t/429": (429, {"Retry-After": "3600"}),  # longer than the crawler waits: not waited for
            "/t/408": (408, {}),
            "/t/waf": (403, {"cf-mitigated": "challenge"}),  # a bot manager's challenge, not the site's refusal
            "/t/403": (403, {}),  # the site's own refusal: the page is gone for us
        }
    )
    again = crawl(f"{limiting_url}/t/a", 1, 20, 100_000, 2, known={page.url: page for page in first})
    kept = {page.url.removeprefix(limiting_url): page.kept for page in again if page.kept}
    assert set(kept) == {"/t/429", "/t/408", "/t/waf"}, kept
    assert kept["/t/429"].startswith("HTTP 429") and kept["/t/408"].startswith("HTTP 408")
    assert f"{limiting_url}/t/403" not in {page.url for page in again}
    by_url = {page.url: page for page in first}
    assert all(page.text == by_url[page.url].text for page in again if page.kept)


def test_a_retry_after_within_reason_is_waited_for_and_the_page_fetched(
    limiting_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ragserve.ingest import crawl as crawl_module

    slept: list[float] = []
    monkeypatch.setattr(crawl_module.time, "sleep", slept.append)
    first = crawl(f"{limiting_url}/t/a", max_depth=1, max_pages=20, max_page_bytes=100_000, timeout_s=2)
    Limiting.answers["/t/later"] = (429, {"Retry-After": "2"})
    Limiting.once.add("/t/later")
    again = crawl(f"{limiting_url}/t/a", 1, 20, 100_000, 2, known={page.url: page for page in first})
    later = next(page for page in again if page.url.endswith("/t/later"))
    assert slept == [2.0] and later.kept is None and Limiting.hits.count("/t/later") == 3  # 200, 429, 200
