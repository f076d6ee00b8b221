from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ragserve.ingest.crawl import CrawlError, crawl, normalise_url

ROOT = Path(__file__).resolve().parent.parent


def crawl_site(url: str, depth: int = 2, max_pages: int = 50) -> list:
    return crawl(url, max_depth=depth, max_pages=max_pages, max_page_bytes=1_000_000, timeout_s=5)


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("http://Example.org:80/blog/", "http://example.org/blog"),
        ("https://example.org/blog/llama3#intro", "https://example.org/blog/llama3"),
        ("http://127.0.0.1:8000/blog/x/index.html", "http://127.0.0.1:8000/blog/x"),
        ("http://example.org", "http://example.org/"),
    ],
)
def test_normalise_url_gives_one_spelling_per_page(url: str, expected: str) -> None:
    assert normalise_url(url) == expected


def test_crawl_visits_same_site_html_pages_in_document_order(site_url: str) -> None:
    pages = crawl_site(site_url + "/")
    assert [p.url.removeprefix(site_url) for p in pages] == [
        "/",
        "/guide",
        "/guide/cats.html",
        "/guide/dogs.html",
        "/guide/birds.html",
        "/guide/deep.html",
    ]
    assert [p.title for p in pages][:3] == ["Test Site Home", "The Guide", "Cats"]


def test_crawl_respects_max_depth_and_max_pages(site_url: str) -> None:
    assert len(crawl_site(site_url + "/", depth=0)) == 1
    assert "/guide/deep.html" not in [p.url.removeprefix(site_url) for p in crawl_site(site_url + "/", depth=1)]
    assert len(crawl_site(site_url + "/", max_pages=2)) == 2


def test_crawl_stays_under_the_start_folder(site_url: str) -> None:
    urls = [p.url.removeprefix(site_url) for p in crawl_site(site_url + "/guide/cats.html")]
    assert urls == ["/guide/cats.html", "/guide/dogs.html"]


def test_text_is_main_content_without_boilerplate(site_url: str) -> None:
    pages = {p.url.removeprefix(site_url): p for p in crawl_site(site_url + "/")}
    guide, cats = pages["/guide"].text, pages["/guide/cats.html"].text
    assert "zebra project ships its index" in guide
    for boilerplate in ("NAVIGATION BAR", "More articles box", "Footer text"):
        assert boilerplate not in guide and boilerplate not in pages["/"].text
    assert "fifteen hours" in cats and "SCRIPT TEXT" not in cats and "color: red" not in cats


def test_unreachable_start_url_fails_naming_url_and_cause() -> None:
    with pytest.raises(CrawlError, match=r"127\.0\.0\.1:9/.*ConnectionError"):
        crawl_site("http://127.0.0.1:9/")


def test_crawl_is_the_same_whatever_the_hash_seed(site_url: str) -> None:
    code = (
        "import json, sys; from ragserve.ingest.crawl import crawl; "
        "pages = crawl(sys.argv[1], 2, 50, 1_000_000, 5); print(json.dumps([(p.url, p.text) for p in pages]))"
    )
    runs = []
    for seed in ("0", "1", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": seed, "PYTHONPATH": str(ROOT / "handlers")}
        out = subprocess.run(
            [sys.executable, "-c", code, site_url + "/"], env=env, check=True, capture_output=True, text=True
        ).stdout
        runs.append(json.loads(out))
    assert runs[0] == runs[1] == runs[2]


SPHINX_PAGE = """<html><head><title>json — JSON encoder and decoder</title></head><body>
<div class="related" role="navigation"><h3>Navigation</h3><ul><li><a href="../index.html">index</a></li></ul></div>
<div class="document"><div class="documentwrapper"><div class="bodywrapper"><div class="body" role="main">
<section id="module-json"><h1>json — JSON encoder and decoder<a class="headerlink" href="#module-json">¶</a></h1>
<p>JSON is a lightweight data interchange format.</p>
<dl><dt id="json.dumps">json.dumps(obj)<a class="headerlink" href="#json.dumps">¶</a></dt>
<dd><p>Serialize obj to a JSON formatted str.</p></dd></dl></section></div></div></div>
<div class="sphinxsidebar" role="navigation"><h3>Previous topic</h3><p>email</p></div></div>
<div class="footer">© Copyright 2001-2026, Python Software Foundation. Created using Sphinx.</div>
</body></html>"""


def test_sphinx_pages_give_their_main_div_without_permalinks_sidebar_or_footer() -> None:
    from bs4 import BeautifulSoup

    from ragserve.ingest.html import html_to_text

    text = html_to_text(BeautifulSoup(SPHINX_PAGE, "html.parser"))
    assert text.splitlines()[0] == "# json — JSON encoder and decoder"
    assert "Serialize obj to a JSON formatted str." in text and "json.dumps(obj)" in text
    for noise in ("¶", "Navigation", "Previous topic", "Copyright", "Sphinx"):
        assert noise not in text


ASIDES_PAGE = """<html><body><main>
<h1>Argument Clinic How-To</h1>
<aside class="topic"><p class="topic-title">Abstract</p><p>Argument Clinic is a preprocessor for CPython C files.</p>
</aside>
<p>Body text with a note.<a class="footnote-reference" href="#f1">1</a></p>
<aside class="footnote-list brackets"><aside class="footnote brackets" id="f1"><p>The footnote's own text.</p></aside>
</aside>
<aside><p>More Articles from our Blog</p></aside>
</main></body></html>"""


def test_docutils_topics_and_footnotes_are_content_other_asides_are_not() -> None:
    """Sphinx writes an abstract (topic) and footnotes as <aside>; a blog's "More Articles" box is one too."""
    from bs4 import BeautifulSoup

    from ragserve.ingest.html import html_to_text

    text = html_to_text(BeautifulSoup(ASIDES_PAGE, "html.parser"))
    assert "Argument Clinic is a preprocessor for CPython C files." in text
    assert "The footnote's own text." in text
    assert "More Articles" not in text


PYDOCS = Path("/usr/share/doc/python3.11/html")


@pytest.mark.skipif(not PYDOCS.is_dir(), reason="python3.11-doc is not installed (apt-get install python3.11-doc)")
def test_the_python_docs_pages_give_their_visible_main_text() -> None:
    from bs4 import BeautifulSoup

    from ragserve.ingest.html import html_to_text

    text = html_to_text(BeautifulSoup((PYDOCS / "library" / "json.html").read_text(), "html.parser"))
    assert text.startswith("# json — JSON encoder and decoder\n") and "object_pairs_hook" in text
    assert "¶" not in text and "Copyright" not in text and "Python Software Foundation" not in text


UTF8_PAGE = (
    '<!DOCTYPE html><html><head><meta charset="utf-8"><title>Quotes</title></head>'
    "<body><main><p>It isn\u2019t \u201cgarbled\u201d \u2014 caf\u00e9 \u2026</p></main></body></html>"
)


def test_a_utf8_page_served_without_a_charset_header_keeps_its_characters(tmp_path: Path) -> None:
    """Python's http.server (and many static hosts) send `text/html` with no charset: the page's own
    <meta charset> decides, as in a browser, not requests' ISO-8859-1 fallback."""
    from ragserve.config import CorpusConfig
    from ragserve.ingest.corpus import documents, split
    from ragserve_ops.testing import serve_directory

    (tmp_path / "quotes.html").write_bytes(UTF8_PAGE.encode("utf-8"))
    server, url = serve_directory(tmp_path)
    try:
        pages = crawl_site(url + "/quotes.html")
    finally:
        server.shutdown()
    chunks = split(documents(pages), CorpusConfig())
    text = " ".join(chunk.page_content for chunk in chunks)
    assert "It isn\u2019t \u201cgarbled\u201d \u2014 caf\u00e9 \u2026" in text
    assert "\u00e2\u0080" not in text  # the mojibake of a UTF-8 quote read as Latin-1


@pytest.mark.parametrize(
    ("body", "content_type", "expected"),
    [
        (UTF8_PAGE.encode("utf-8"), "text/html", "isn\u2019t"),  # meta charset
        (b"\xef\xbb\xbf<p>isn\xe2\x80\x99t</p>", "text/html; charset=iso-8859-1", "isn\u2019t"),  # BOM beats header
        ("<p>caf\u00e9</p>".encode("latin-1"), "text/html; charset=ISO-8859-1", "caf\u00e9"),  # header charset
        ('<meta charset="windows-1252"><p>\x93q\x94</p>'.encode("latin-1"), "text/html", "\u201cq\u201d"),
        ("<p>caf\u00e9 \u2019</p>".encode("utf-8"), "text/html", "caf\u00e9 \u2019"),  # nothing declared: UTF-8
    ],
)
def test_decode_html_follows_the_html_rule(body: bytes, content_type: str, expected: str) -> None:
    from ragserve.ingest.html import decode_html

    assert expected in decode_html(body, content_type)


def test_include_keeps_matching_pages_and_still_follows_the_others_links(site_url: str) -> None:
    """corpus.include: /guide/deep.html is linked from /guide only, which is fetched for its links but not kept."""
    pages = crawl(site_url + "/", 2, 50, 1_000_000, 5, include=["guide/deep.html", "guide/c*.html"])
    assert [p.url.removeprefix(site_url) for p in pages] == ["/guide/cats.html", "/guide/deep.html"]
    assert all(p.text for p in pages)
    first = crawl(site_url + "/", 2, 1, 1_000_000, 5, include=["guide/deep.html"])  # max_pages counts kept pages
    assert [p.url.removeprefix(site_url) for p in first] == ["/guide/deep.html"]


def test_include_matches_a_folder_page_as_its_index_html_and_comes_after_exclude(site_url: str) -> None:
    pages = crawl(site_url + "/", 2, 50, 1_000_000, 5, exclude=["guide/dogs.html"], include=["guide/*", "index.html"])
    kept = [p.url.removeprefix(site_url) for p in pages]
    assert kept == ["/", "/guide", "/guide/cats.html", "/guide/birds.html", "/guide/deep.html"]  # not dogs.html
    with pytest.raises(CrawlError, match="no page matched include"):
        crawl(site_url + "/", 2, 50, 1_000_000, 5, include=["nothing/*"])


def test_a_paragraph_is_one_line_and_code_keeps_its_lines() -> None:
    from bs4 import BeautifulSoup

    from ragserve.ingest.html import html_to_text

    html = "<main><p>wrapped at\neighty columns\nby Sphinx</p><pre>x = 1\ny = 2</pre><h2>Next</h2></main>"
    expected = "wrapped at eighty columns by Sphinx\n```\nx = 1\ny = 2\n```\n## Next"
    assert html_to_text(BeautifulSoup(html, "lxml")) == expected
