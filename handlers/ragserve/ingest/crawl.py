"""Deterministic same-site web crawler: start URL -> list of (url, title, text) pages (the text: html.py).

Public names: crawl, Page, CrawlError.
A crawl can revalidate an earlier one: given its pages (`known`), each request carries their validators
(If-None-Match / If-Modified-Since); a 304 reuses the known page, its text and its links, without a download. A
known page the server cannot give now is kept as it was, with a warning and the reason in Page.kept: the server
failing (a timeout, a 5xx, its robots.txt unreachable) or refusing us for now (408, 425, 429, and a 403 that a WAF
or bot manager answered: it carries Retry-After or one of WAF_MARKERS). A Retry-After of at most RETRY_AFTER_MAX_S
is waited for and the page asked again once, up to RETRY_BUDGET_S of waiting per crawl; a longer one is not waited
for. A page gone (404, 410, the site's own 403), now disallowed by robots.txt or out of reach of the links is dropped.
Breadth-first, links visited in document order, one page per normalised URL, so the same site gives the same pages in
the same order on every run. We do not use LangChain's RecursiveUrlLoader: from a page linking many others it visits a
different subset each run (its traversal depends on set/thread ordering), and it follows no byte or page limits.
Only http(s), only HTML, only URLs under the start URL's site and path prefix (redirects included), private or
loopback addresses only when the start URL itself is one; no TorchServe imports. robots.txt is read first (robots.py;
robots=False: not read): a URL it disallows for USER_AGENT is neither fetched nor followed (the start URL: CrawlError
naming the rule), its Crawl-delay spaces the requests; unreachable, it refuses every URL (RFC 9309) as a 5xx would.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import ipaddress
import logging
import socket
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from urllib.parse import urldefrag, urljoin, urlsplit, urlunsplit

import requests
from bs4 import BeautifulSoup

from ragserve.ingest.html import decode_html, html_to_text
from ragserve.ingest.metadata import page_metadata
from ragserve.ingest.robots import Robots, read_robots

logger = logging.getLogger(__name__)

USER_AGENT = "ragserve-crawler/1.0"
MAX_REDIRECTS = 5
TRANSIENT_STATUSES = frozenset({408, 425, 429})  # and every 5xx: the server busy, limiting or failing
# Headers of a 403 that a WAF or bot manager answered, not the site (Cloudflare's challenge, AWS WAF, Sucuri,
# DataDome, Imperva): the page is there, the crawler is refused for now.
WAF_MARKERS = ("cf-mitigated", "x-amzn-waf-action", "x-sucuri-block", "x-datadome", "x-iinfo")
RETRY_AFTER_MAX_S = 30.0  # a longer Retry-After is not waited for: the page is kept (known) or skipped
RETRY_BUDGET_S = 120.0  # at most this much waiting for Retry-After in one crawl


class CrawlError(RuntimeError):
    """The crawl produced no usable page; the message names the URL and the cause."""


@dataclass(frozen=True)
class Page:
    url: str
    title: str
    text: str
    metadata: dict[str, str] = field(default_factory=dict)  # published, authors, tags (metadata.py)
    links: tuple[str, ...] = ()  # in-scope links in document order (what a revalidated page still links to)
    etag: str | None = None  # the response's validators, sent back on the next crawl
    last_modified: str | None = None
    fetched: str | None = None  # when this text was downloaded (UTC, ISO 8601)
    revalidated: bool = False  # True: this crawl got 304 (or kept it through an error) and reused it
    kept: str | None = None  # why this crawl kept the known copy: the server's failure or refusal ("HTTP 429")


def crawl(
    start_url: str,
    max_depth: int,
    max_pages: int,
    max_page_bytes: int,
    timeout_s: float,
    extract: str = "main",
    known: Mapping[str, Page] | None = None,
    exclude: Sequence[str] = (),
    include: Sequence[str] = (),
    robots: bool = True,
) -> list[Page]:
    """Fetch start_url and the pages it links to, up to max_depth hops, in a stable order.

    known: an earlier crawl's pages by URL, revalidated instead of downloaded where the server allows.
    exclude: glob patterns of paths under the start folder that are neither fetched nor followed.
    include: glob patterns of the paths kept as pages (empty: all); a page that matches none is still fetched
    and its links followed (a slice of a site is reached through its other pages), but not kept.
    robots: obey the site's robots.txt (robots.py); False for a site you run."""
    known = known or {}
    start = normalise_url(start_url)
    prefix = _scope_prefix(start)
    private = _is_private(urlsplit(start).hostname or "")
    scope = _Scope(prefix, allow_private=private, exclude=tuple(exclude), include=tuple(include))
    queue: deque[tuple[str, int]] = deque([(start, 0)])
    seen = {start}
    pages: list[Page] = []
    errors: list[str] = []
    patience = _Patience(RETRY_BUDGET_S)
    with requests.Session() as session:
        session.headers["User-Agent"] = USER_AGENT
        if robots:  # before the first page: what robots.txt refuses, the scope refuses (a start URL: CrawlError)
            rules = read_robots(session, start, timeout_s, max_page_bytes, None if private else _is_private, _transient)
            scope = dataclasses.replace(scope, robots=rules)
        while queue and len(pages) < max_pages:
            url, depth = queue.popleft()
            try:
                page = _fetch_page(session, url, scope, max_page_bytes, timeout_s, extract, known, patience)
            except _SkipPage as err:
                if err.transient and url in known:
                    page = dataclasses.replace(known[url], revalidated=True, kept=str(err))
                    logger.warning("%s: %s; keeping the copy fetched %s", url, err, page.fetched)
                else:
                    logger.warning("skipping %s: %s", url, err)
                    errors.append(f"{url}: {err}")
                    continue
            if page.text:
                pages.append(page)
                logger.info("%s page %d: %s", "revalidated" if page.revalidated else "fetched", len(pages), page.url)
            for link in page.links if depth < max_depth else ():
                if link not in seen:
                    seen.add(link)
                    queue.append((link, depth + 1))
    if not pages:
        causes = [*errors[:3], *(["no page matched include"] if include else [])]
        raise CrawlError(f"no usable page at {start_url}: " + ("; ".join(causes) or "pages were empty"))
    return pages


def normalise_url(url: str) -> str:
    """One spelling per page: lower-case host, no fragment, no trailing slash, no default port."""
    url, _ = urldefrag(url)
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    port = parts.port
    if port and not ((parts.scheme == "http" and port == 80) or (parts.scheme == "https" and port == 443)):
        host = f"{host}:{port}"
    path = parts.path.rstrip("/") or "/"
    if path.endswith("/index.html"):
        path = path[: -len("/index.html")] or "/"
    return urlunsplit((parts.scheme.lower(), host, path, parts.query, ""))


class _SkipPage(Exception):
    def __init__(self, message: str, transient: bool = False) -> None:
        super().__init__(message)
        self.transient = transient  # the page may be back later (timeout, 5xx, 429...): keep a known copy


@dataclass
class _Patience:
    """The Retry-After waiting a crawl has left (RETRY_BUDGET_S)."""

    left_s: float

    def wait(self, response: requests.Response) -> bool:
        """Wait out a transient answer's Retry-After when it is short enough and the budget allows; True if waited."""
        delay = _retry_after(response) if _transient(response) else None
        if delay is None or delay > min(RETRY_AFTER_MAX_S, self.left_s):
            return False
        self.left_s -= delay
        logger.info("%s: HTTP %d, waiting %.0f s (Retry-After)", response.url, response.status_code, delay)
        time.sleep(delay)
        return True


@dataclass(frozen=True)
class _Scope:
    """What the crawler may fetch: URLs under prefix; private addresses only if the start URL is one."""

    prefix: str
    allow_private: bool
    exclude: tuple[str, ...] = ()
    include: tuple[str, ...] = ()  # empty: every page in scope is kept
    robots: Robots = field(default_factory=Robots)  # the site's robots.txt (robots.py); default: no rules

    def covers(self, url: str) -> bool:
        """Under the prefix and not excluded (patterns match the path after the prefix)."""
        if not (url.startswith(self.prefix) or url + "/" == self.prefix):
            return False
        return not excluded(url[len(self.prefix) :], self.exclude)

    def keeps(self, url: str) -> bool:
        """Whether a page in scope is kept (include), not only fetched for its links."""
        return included(url[len(self.prefix) :], self.include)

    def check(self, url: str) -> None:
        if not self.covers(url):
            raise _SkipPage(f"{url} is outside {self.prefix} or excluded")
        if not self.allow_private and _is_private(urlsplit(url).hostname or ""):
            raise _SkipPage(f"{url} resolves to a private or loopback address")
        if refusal := self.robots.refusal(url):  # robots.txt unreachable: a known page is kept, as through a 5xx
            raise _SkipPage(refusal, transient=self.robots.unreachable is not None)


def _is_private(host: str) -> bool:
    """True when host resolves to a loopback, private, link-local or reserved address."""
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False  # unresolvable: the fetch itself will fail and say so
    addresses = {ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos}
    return any(a.is_private or a.is_loopback or a.is_link_local or a.is_reserved for a in addresses)


def _fetch_page(
    session: requests.Session,
    url: str,
    scope: _Scope,
    max_bytes: int,
    timeout_s: float,
    extract: str,
    known: Mapping[str, Page],
    patience: _Patience,
) -> Page:
    """Follow up to MAX_REDIRECTS redirects by hand, so each hop is checked against the scope.

    Each hop whose URL was known carries its validators; a 304 answers with the known page. A transient answer
    with a short Retry-After is waited for and the hop asked once more (_Patience)."""
    for _ in range(MAX_REDIRECTS + 1):
        hop = normalise_url(url)
        scope.check(hop)
        scope.robots.pace()
        response = _get(session, url, timeout_s, _validators(known.get(hop)))
        if patience.wait(response):
            response.close()
            response = _get(session, url, timeout_s, _validators(known.get(hop)))
        if response.status_code == 304 and hop in known:
            response.close()
            return dataclasses.replace(known[hop], revalidated=True)
        if not response.is_redirect:
            response_url, html = _read_html(response, max_bytes)
            soup = BeautifulSoup(html, "lxml")
            links = tuple(_links(soup, response_url, scope))
            page_url = normalise_url(response_url)
            if not scope.keeps(page_url):  # fetched for its links only: without text, the crawl keeps no page
                return Page(page_url, "", "", links=links)
            validators = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
            return _to_page(page_url, soup, extract, links, validators)
        response.close()
        url = urljoin(url, response.headers["Location"])
    raise _SkipPage(f"more than {MAX_REDIRECTS} redirects")


def _validators(page: Page | None) -> dict[str, str]:
    headers = {}
    if page and page.etag:
        headers["If-None-Match"] = page.etag
    if page and page.last_modified:
        headers["If-Modified-Since"] = page.last_modified
    return headers


def _get(session: requests.Session, url: str, timeout_s: float, headers: dict[str, str]) -> requests.Response:
    try:
        return session.get(url, timeout=timeout_s, stream=True, allow_redirects=False, headers=headers)
    except requests.RequestException as err:
        raise _SkipPage(f"{type(err).__name__}: {err}", transient=True) from err


def _read_html(response: requests.Response, max_bytes: int) -> tuple[str, str]:
    with response:
        if response.status_code != 200:
            delay = _retry_after(response)
            later = f" (Retry-After {delay:.0f} s)" if delay is not None else ""
            raise _SkipPage(f"HTTP {response.status_code}{later}", transient=_transient(response))
        content_type = response.headers.get("Content-Type", "")
        if "html" not in content_type.lower():
            raise _SkipPage(f"not HTML ({content_type or 'no Content-Type'})")
        return response.url, decode_html(_read_limited(response, max_bytes), content_type)


def _transient(response: requests.Response) -> bool:
    """The server failing or refusing the crawler for now, not the page gone (TRANSIENT_STATUSES, WAF_MARKERS)."""
    status = response.status_code
    if status == 403:
        return "Retry-After" in response.headers or any(name in response.headers for name in WAF_MARKERS)
    return status in TRANSIENT_STATUSES or status >= 500


def _retry_after(response: requests.Response) -> float | None:
    """Retry-After in seconds (it gives seconds or an HTTP date), None when absent or unreadable."""
    value = response.headers.get("Retry-After", "").strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _read_limited(response: requests.Response, max_bytes: int) -> bytes:
    chunks, total = [], 0
    try:
        for chunk in response.iter_content(64 * 1024):
            total += len(chunk)
            if total > max_bytes:
                raise _SkipPage(f"larger than max_page_bytes={max_bytes}")
            chunks.append(chunk)
    except requests.RequestException as err:
        raise _SkipPage(f"{type(err).__name__}: {err}", transient=True) from err
    return b"".join(chunks)


def excluded(path: str, patterns: Sequence[str]) -> bool:
    """Whether a relative path ("_sources/json.rst.txt", "genindex-A.html") matches one of the glob patterns."""
    return any(fnmatch.fnmatchcase(path, pattern) for pattern in patterns)


def included(path: str, patterns: Sequence[str]) -> bool:
    """Whether a relative path matches one of the glob patterns, or there are none. A folder's page, which
    normalise_url spells without its index.html ("guide"), matches as "guide/index.html" too."""
    index_page = f"{path}/index.html".lstrip("/")
    return not patterns or any(fnmatch.fnmatchcase(p, pattern) for p in (path, index_page) for pattern in patterns)


def _scope_prefix(start: str) -> str:
    """Links are followed only under the start page's folder: /blog/llama3 -> /blog/."""
    parts = urlsplit(start)
    folder = parts.path if parts.path.endswith("/") else parts.path.rsplit("/", 1)[0] + "/"
    return urlunsplit((parts.scheme, parts.netloc, folder, "", ""))


def _links(soup: BeautifulSoup, base_url: str, scope: _Scope) -> list[str]:
    links = []
    for anchor in soup.find_all("a", href=True):
        url = urljoin(base_url, anchor["href"].strip())
        if not url.startswith(("http://", "https://")):
            continue  # mailto:, javascript:, file:, ...
        url = normalise_url(url)
        if scope.covers(url):
            links.append(url)
    return links


def _to_page(
    url: str, soup: BeautifulSoup, extract: str, links: tuple[str, ...], validators: tuple[str | None, str | None]
) -> Page:
    title_tag = soup.find("title")
    heading = soup.find("h1")
    title = (title_tag or heading).get_text(" ", strip=True) if (title_tag or heading) else url
    metadata = page_metadata(soup)  # before html_to_text, which drops the byline block
    fetched = datetime.now(timezone.utc).isoformat(timespec="seconds")
    text = html_to_text(soup, extract)
    return Page(url, title, text, metadata, links, *validators, fetched=fetched)
