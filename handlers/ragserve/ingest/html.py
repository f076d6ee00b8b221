"""HTML to text: a page's main content as markdown-shaped lines, its bytes decoded as a browser decodes them.

Public names: html_to_text, decode_html, EXTRACTOR_VERSION.
html_to_text drops the boilerplate (scripts, navigation, headers, footers, bylines, share bars, Sphinx's heading
permalinks), keeps the main content (article, main, Sphinx's div[role=main]), puts a paragraph on one line and
marks headings, Sphinx's API entries and code blocks as markdown does (`#` lines, ``` fences), so the structure
splitter (structure.py) sees sections, entries and code as a reader does. decode_html: a byte-order mark, the
Content-Type charset, the page's own <meta charset>, then detection. crawl.py decodes and extracts every fetched
page with them; corpus.py extracts local .html files. EXTRACTOR_VERSION is part of an index line's identity
(index/line.py). No network.
"""

from __future__ import annotations

import codecs
import re

from bs4 import BeautifulSoup, Tag, UnicodeDammit

BOILERPLATE_TAGS = ["script", "style", "noscript", "nav", "header", "footer", "aside", "form", "template"]
# ... but docutils (Sphinx: the Python docs) writes a topic's abstract and the footnotes as <aside>: content, kept.
CONTENT_ASIDES = {"topic", "footnote", "footnote-list"}
# Bylines, dates, tag lists and share bars inside an article, Sphinx's heading permalinks ("¶"): noise for retrieval.
BOILERPLATE_SELECTORS = (
    '[class*="byline"], [class*="metadata"], [class*="author"], [class*="share"], [role="navigation"], a.headerlink'
)
BLOCK_TAGS = ["p", "div", "li", "pre", "blockquote", "tr", "dt", "dd", "section", "table", "ul", "ol", "figure"]
# The version of html_to_text's output. A refresh reuses a page's stored text when its server answers 304, so a
# change of the extraction reaches an existing index line only through the line's identity (index/line.py), which
# carries this: bump it whenever html_to_text gives other text for the same HTML.
# 2: charset as browsers decode, a paragraph on one line, API entries as headings, fenced code (2026-12-06).
# 3: docutils' <aside class="topic|footnote|footnote-list"> kept (howto/clinic.html's abstract was lost).
EXTRACTOR_VERSION = 3
BOMS = ((b"\xef\xbb\xbf", "utf-8"), (b"\xff\xfe", "utf-16-le"), (b"\xfe\xff", "utf-16-be"))  # HTML's order: BOM first


def html_to_text(soup: BeautifulSoup, extract: str = "main") -> str:
    """Readable text of the page's main content, headings as markdown `#` lines.

    extract == 'page' gives the original demo's text instead: every string of the page, one per line.
    """
    if extract == "page":
        return _clean_lines(soup.get_text("\n"))
    for tag in soup(BOILERPLATE_TAGS) + soup.select(BOILERPLATE_SELECTORS):
        if tag.name == "aside" and CONTENT_ASIDES & set(tag.get("class") or ()):
            continue
        tag.decompose()
    # Sphinx (e.g. the Python docs) marks its content div[role=main] (div.body in older themes), beside its
    # sidebar, related-links bars and footer divs.
    main = soup.find("article") or soup.find("main") or soup.select_one('[role="main"]') or soup.select_one("div.body")
    root = main or soup.body or soup
    _fold_source_lines(root)
    _mark_blocks(root)
    return _clean_lines(root.get_text())


def _fold_source_lines(root: Tag) -> None:
    """A paragraph is one line: the line breaks of the HTML source inside it (Sphinx wraps every paragraph at
    ~80 columns) are spaces to a browser, so they are here (code blocks keep theirs). A splitter that cuts at
    lines then cuts between paragraphs, never in the middle of a sentence."""
    for string in root.find_all(string=True):
        if "\n" in string and string.find_parent("pre") is None:
            string.replace_with(string.replace("\n", " "))


def _mark_blocks(root: Tag) -> None:
    """Put block elements on their own lines (inline links stay inside their sentence), headings as `#`, API
    entries as headings one level under their section, code blocks between ``` fences (markdown's marks, so
    the structure splitter, structure.py, sees sections, entries and code as a reader does)."""
    entries = [(dt, _api_level(dt)) for dt in root.select("dt.sig-object")]  # Sphinx: functions, classes, options
    for dt, level in entries:  # levels first: renaming a class's dt would hide it from its methods
        if level:
            dt.name = f"h{level}"
    for level in range(1, 7):
        for heading in root.find_all(f"h{level}"):
            heading.string = "#" * level + " " + " ".join(heading.get_text().split())  # one line
            heading.insert_before("\n")
            heading.append("\n")
    for cell in root.find_all(["td", "th"]):  # a row on one line, even where cells hold paragraphs (Sphinx)
        cell.string = " ".join(cell.get_text().split()) + " | "
    for pre in root.find_all("pre"):
        pre.insert_before("\n```\n")
        pre.insert_after("\n```\n")
    for br in root.find_all("br"):
        br.replace_with("\n")
    for block in root.find_all(BLOCK_TAGS):
        block.insert_before("\n")
        block.append("\n")


def _api_level(dt: Tag) -> int:
    """The heading level of a Sphinx entry's first signature (`dl.py.function > dt.sig-object`, options, C
    functions): one below its section, a method one below its class; 0 for an overload's second signature,
    which stays a line of its entry."""
    entry = dt.parent
    if entry is None or entry.find("dt", recursive=False) is not dt:
        return 0
    sections = len(dt.find_parents("section"))
    entries = [dl for dl in dt.find_parents("dl") if dl.find("dt", class_="sig-object", recursive=False)]
    return min(6, max(1, sections) + len(entries))  # entries: its own and those it is nested in


def decode_html(body: bytes, content_type: str = "") -> str:
    """The page's text as a browser decodes it: a byte-order mark first, then the Content-Type header's
    charset, then the page's own `<meta charset>` (or http-equiv), then detection (UTF-8 before
    Windows-1252). `requests`' response.encoding is not that: without a charset in the header it says
    ISO-8859-1 and garbles every UTF-8 page served by Python's http.server and many static hosts."""
    for bom, codec in BOMS:
        if body.startswith(bom):
            return body[len(bom) :].decode(codec, errors="replace")
    charset = _header_charset(content_type)
    if charset:
        return body.decode(charset, errors="replace")
    return UnicodeDammit(body, is_html=True).unicode_markup or body.decode("utf-8", errors="replace")


def _header_charset(content_type: str) -> str | None:
    """The charset parameter of a Content-Type header, if it names a codec Python knows."""
    match = re.search(r"charset\s*=\s*[\"']?([\w.:-]+)", content_type, re.IGNORECASE)
    if not match:
        return None
    try:
        return codecs.lookup(match.group(1)).name
    except LookupError:
        return None


def _clean_lines(text: str) -> str:
    lines = (" ".join(line.split()) for line in text.splitlines())
    return "\n".join(line for line in lines if line)
