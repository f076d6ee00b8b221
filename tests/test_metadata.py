"""Page metadata from HTML (date, authors, tags) and dates written as words."""

from __future__ import annotations

from bs4 import BeautifulSoup

from ragserve.ingest.metadata import date_terms, page_metadata

BLOG_PAGE = """<html><head><title>Welcome Mixtral</title></head><body><main><article>
<div class="blog-metadata"><p>Published December 11, 2023</p>
<p>By <a href="/lewtun">lewtun</a>, <a href="/philschmid">philschmid</a></p>
<p>Tags: mixtral, moe</p></div>
<h1>Welcome Mixtral</h1><p>By the way, Mixtral is a sparse model.</p></article></main></body></html>"""


def test_visible_published_by_and_tags_lines_are_read() -> None:
    meta = page_metadata(BeautifulSoup(BLOG_PAGE, "lxml"))
    assert meta == {"published": "2023-12-11", "authors": "lewtun, philschmid", "tags": "mixtral, moe"}


def test_standard_meta_tags_win_over_visible_text() -> None:
    html = (
        '<html><head><meta property="article:published_time" content="2024-04-18T10:00:00Z">'
        '<meta name="author" content="Ada, Grace"><meta name="keywords" content="llm, meta"></head>'
        "<body><p>Published January 1, 2020</p></body></html>"
    )
    meta = page_metadata(BeautifulSoup(html, "lxml"))
    assert meta == {"published": "2024-04-18", "authors": "Ada, Grace", "tags": "llm, meta"}


def test_a_page_without_metadata_gets_none_and_prose_is_not_a_byline() -> None:
    html = "<html><body><p>By the end of 2023 we had published nothing.</p></body></html>"
    assert page_metadata(BeautifulSoup(html, "lxml")) == {}


def test_dates_are_written_the_ways_people_ask_for_them() -> None:
    terms = date_terms("2024-04-18").split(", ")
    assert {"2024-04-18", "april 2024", "apr 2024", "spring 2024", "early 2024", "q2 2024"} <= set(terms)
    assert "autumn 2024" in date_terms("2024-09-25") and "fall 2024" in date_terms("2024-09-25")
    assert "mid-2024" in date_terms("2024-06-27")
    assert date_terms("") == "" and date_terms("not a date") == ""
