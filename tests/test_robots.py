"""robots.txt (ingest/robots.py, RFC 9309) in a crawl: what it disallows is never asked for, an unreachable one fails a
first crawl and keeps a refresh's known pages, Crawl-delay spaces the requests (bounded)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from ragserve.ingest import robots as robots_module
from ragserve.ingest.crawl import CrawlError, crawl
from ragserve_ops.testing import Replying, http_site

LINKS = {"/r/a": ["/r/b", "/r/private", "/r/private/open", "/r/secret"], "/r/private": ["/r/hidden"]}
# Our group, not `*`'s, applies to ragserve-crawler/1.0; its longer Allow wins over the shorter Disallow (§2.2.2),
# though the standard library's parser alone would take the first rule that matches.
RULES = """User-agent: *
Disallow: /

User-agent: ragserve-crawler
Disallow: /r/private
Allow: /r/private/open
"""


class Site(Replying):
    """Pages /r/<name> linking as LINKS says; robots.txt answers `robots` (status, body). `hits`: every path asked."""

    robots: tuple[int, str] = (404, "")
    hits: list[str] = []

    def do_GET(self) -> None:  # noqa: N802 - http.server's name
        type(self).hits.append(self.path)
        if self.path == "/robots.txt":
            status, text = type(self).robots
            self.reply(status, "text/plain", text.encode())
            return
        links = "".join(f'<a href="{link}">x</a>' for link in LINKS.get(self.path, []))
        self.reply(200, "text/html", f"<html><body><main><p>Page {self.path}.</p>{links}</main></body></html>".encode())


@pytest.fixture
def site(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setattr(Site, "robots", (404, ""))
    monkeypatch.setattr(Site, "hits", [])
    with http_site(Site) as url:
        yield url


def crawl_site(url: str, **options: Any) -> list:
    return crawl(f"{url}/r/a", max_depth=2, max_pages=20, max_page_bytes=100_000, timeout_s=2, **options)


def paths(pages: list, url: str) -> list[str]:
    return [page.url.removeprefix(url) for page in pages]


def test_a_disallowed_path_is_neither_fetched_nor_followed(site: str) -> None:
    Site.robots = (200, RULES)
    pages = crawl_site(site)
    assert paths(pages, site) == ["/r/a", "/r/b", "/r/private/open", "/r/secret"]
    assert Site.hits[0] == "/robots.txt" and "/r/private" not in Site.hits and "/r/hidden" not in Site.hits


def test_a_404_robots_txt_allows_everything(site: str) -> None:
    pages = crawl_site(site)
    assert paths(pages, site) == ["/r/a", "/r/b", "/r/private", "/r/private/open", "/r/secret", "/r/hidden"]
    assert Site.hits[0] == "/robots.txt" and Site.hits.count("/robots.txt") == 1  # asked once, before any page


def test_robots_false_reads_no_robots_txt(site: str) -> None:
    Site.robots = (200, RULES)
    assert "/r/private" in paths(crawl_site(site, robots=False), site) and "/robots.txt" not in Site.hits


@pytest.mark.parametrize("status", [503, 429])
def test_an_unreachable_robots_txt_fails_a_first_crawl_naming_it(site: str, status: int) -> None:
    """RFC 9309 §2.3.1.4: a 5xx (or the server refusing us for now) means assume complete disallow."""
    Site.robots = (status, "")
    with pytest.raises(CrawlError, match=rf"{site}/robots\.txt unreachable \(HTTP {status}\)"):
        crawl_site(site)
    assert Site.hits == ["/robots.txt"]  # no page asked for


def test_an_unreachable_robots_txt_keeps_a_refreshs_known_pages_and_fetches_nothing(site: str) -> None:
    first = crawl_site(site)
    Site.robots, Site.hits = (500, ""), []
    again = crawl_site(site, known={page.url: page for page in first})
    assert paths(again, site) == paths(first, site) and Site.hits == ["/robots.txt"]
    assert all(page.kept == f"{site}/robots.txt unreachable (HTTP 500)" and page.revalidated for page in again)
    assert [page.text for page in again] == [page.text for page in first]


def test_a_disallowed_start_url_is_a_crawl_error_naming_robots_txt_and_the_rule(site: str) -> None:
    Site.robots = (200, "User-agent: *\nDisallow: /r/a\n")
    rule = rf"disallowed for ragserve-crawler/1\.0 by {site}/robots\.txt \(Disallow: /r/a\)"
    with pytest.raises(CrawlError, match=rule):
        crawl_site(site)
    assert Site.hits == ["/robots.txt"]


def test_a_known_page_now_disallowed_is_dropped_and_logged(site: str, caplog: pytest.LogCaptureFixture) -> None:
    first = crawl_site(site)
    Site.robots, Site.hits = (200, "User-agent: *\nDisallow: /r/b\n"), []
    caplog.set_level(logging.WARNING, logger="ragserve.ingest.crawl")
    again = crawl_site(site, known={page.url: page for page in first})
    assert "/r/b" in paths(first, site) and "/r/b" not in paths(again, site) and "/r/b" not in Site.hits
    assert f"{site}/r/b: disallowed for ragserve-crawler/1.0 by {site}/robots.txt (Disallow: /r/b)" in caplog.text


def test_crawl_delay_spaces_the_requests_and_is_capped(site: str, monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []
    monkeypatch.setattr(robots_module.time, "sleep", slept.append)
    Site.robots = (200, "User-agent: *\nCrawl-delay: 3600\n")
    pages = crawl_site(site)
    cap = robots_module.CRAWL_DELAY_MAX_S
    assert len(slept) == len(pages) == 6  # before every page (the first waits after robots.txt)
    assert all(cap - 1 < delay <= cap for delay in slept), slept
