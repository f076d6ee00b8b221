"""robots.txt (RFC 9309) for crawl.py: read once per crawl, before the first page, then asked about every URL.

Public names: read_robots, Robots, robots_url, CRAWL_DELAY_MAX_S.
read_robots fetches <scheme>://<host>/robots.txt with the crawl's session (its User-Agent), timeout and byte limit,
following up to MAX_REDIRECTS redirects, to another host too (§2.3.1.2; each hop's host checked as a page's is).
The answer (§2.3.1): a 2xx body is the rules; another 4xx (404: there is none) or a sixth redirect means no rules
(§2.3.1.3); a 5xx, no answer, or a refusal for now (crawl.py's 408, 425, 429, a WAF's 403) leaves it unreachable,
and then every URL is refused (§2.3.1.4: assume complete disallow) as a transient failure: crawl.py keeps a known
page through it as through a 5xx, and a first crawl fails naming robots.txt and why. A body over the byte limit is
cut at its last whole line (§2.5 asks for at least 500 KiB).
We parse with the standard library's urllib.robotparser rather than a parser of our own, with its limits: the
group for our agent is the first that names a part of it (else `*`'s), `*` and `$` in a path are not wildcards,
Crawl-delay is whole seconds. Its first-match rule order is re-sorted to the RFC's: the longest path wins, Allow
on a tie (§2.2.2). Crawl-delay (not in the RFC, a common extension) spaces the crawl's requests, at most
CRAWL_DELAY_MAX_S apart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urljoin, urlsplit, urlunsplit
from urllib.robotparser import RobotFileParser

import requests

logger = logging.getLogger(__name__)

MAX_REDIRECTS = 5  # §2.3.1.2: follow at least five; past them the file may be taken as unavailable
CRAWL_DELAY_MAX_S = 10.0  # a longer Crawl-delay is cut to this (200 pages then take about half an hour)


@dataclass
class Robots:
    """A site's robots.txt as it applies to one user agent. Without a parser: no rules (none there, or not obeyed)."""

    url: str = ""
    agent: str = ""
    parser: RobotFileParser | None = None
    delay_s: float = 0.0  # Crawl-delay, at most CRAWL_DELAY_MAX_S
    next_at: float = 0.0  # time.monotonic() before which the next request waits
    unreachable: str | None = None  # why robots.txt could not be read ("HTTP 503"): every URL is refused

    def refusal(self, url: str) -> str | None:
        """Why url may not be fetched ("disallowed for <agent> by <robots.txt> (Disallow: /x)"), or None."""
        if self.unreachable is not None:
            return f"{self.url} unreachable ({self.unreachable})"
        if self.parser is None or self.parser.can_fetch(self.agent, url):
            return None
        return f"disallowed for {self.agent} by {self.url} ({self._rule(url)})"

    def pace(self) -> None:
        """Wait until Crawl-delay has passed since the previous request (robots.txt's counts)."""
        if self.delay_s:
            if (wait := self.next_at - time.monotonic()) > 0:
                time.sleep(wait)
            self.next_at = time.monotonic() + self.delay_s

    def _rule(self, url: str) -> str:
        """The rule that decided, found as RobotFileParser.can_fetch finds it: our group, its first match."""
        parts = urlsplit(unquote(url))
        path = quote(urlunsplit(("", "", parts.path, parts.query, ""))) or "/"
        groups = [*self.parser.entries, self.parser.default_entry] if self.parser else []
        group = next((g for g in groups if g is not None and g.applies_to(self.agent)), None)
        rule = next((r for r in group.rulelines if r.applies_to(path)), None) if group else None
        return str(rule) if rule else "Disallow"


def robots_url(url: str) -> str:
    """The robots.txt of url's site: <scheme>://<host>[:port]/robots.txt."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))


def read_robots(
    session: requests.Session,
    start: str,
    timeout_s: float,
    max_bytes: int,
    is_private: Callable[[str], bool] | None,
    refused: Callable[[requests.Response], bool],
) -> Robots:
    """The rules of start's site for the session's User-Agent (see the module docstring).

    is_private(host): a hop to such a host is not asked (None: any host is); refused(response): an answer that is
    the server refusing us for now, not saying there is no robots.txt (crawl.py's 429, a WAF's 403)."""
    url = hop = robots_url(start)
    agent = str(session.headers.get("User-Agent", "*"))
    for _ in range(MAX_REDIRECTS + 1):
        if is_private and is_private(urlsplit(hop).hostname or ""):
            return _unreachable(url, agent, f"{hop} resolves to a private or loopback address")
        try:
            with session.get(hop, timeout=timeout_s, stream=True, allow_redirects=False) as response:
                if response.is_redirect:
                    hop = urljoin(hop, response.headers["Location"])
                    continue
                if response.status_code >= 500 or refused(response):
                    return _unreachable(url, agent, f"HTTP {response.status_code}")
                if response.status_code >= 400:
                    logger.info("%s: HTTP %d, no rules", url, response.status_code)
                    return Robots(url, agent)
                body = _read_upto(response, max_bytes)
        except requests.RequestException as err:
            return _unreachable(url, agent, f"{type(err).__name__}: {err}")
        return _parsed(url, agent, body.decode("utf-8-sig", errors="replace"))
    logger.info("%s: more than %d redirects, no rules", url, MAX_REDIRECTS)
    return Robots(url, agent)


def _unreachable(url: str, agent: str, why: str) -> Robots:
    logger.warning("%s unreachable (%s): every page counts as disallowed (RFC 9309 §2.3.1.4)", url, why)
    return Robots(url, agent, unreachable=why)


def _parsed(url: str, agent: str, text: str) -> Robots:
    parser = RobotFileParser(url)  # the standard library's parser, not one of our own
    parser.parse(text.splitlines())
    for group in [*parser.entries, parser.default_entry]:  # §2.2.2: the longest match wins, Allow on a tie
        if group is not None:
            group.rulelines.sort(key=lambda rule: (-len(rule.path), not rule.allowance))
    delay = min(float(parser.crawl_delay(agent) or 0), CRAWL_DELAY_MAX_S)
    logger.info("%s: read%s", url, f", Crawl-delay {delay:.0f} s" if delay else "")
    return Robots(url, agent, parser, delay, next_at=time.monotonic() + delay)


def _read_upto(response: requests.Response, max_bytes: int) -> bytes:
    """The body, or its first max_bytes cut at the last whole line."""
    body = bytearray()
    for chunk in response.iter_content(64 * 1024):
        body += chunk
        if len(body) > max_bytes:
            return bytes(body[:max_bytes].rpartition(b"\n")[0])
    return bytes(body)
