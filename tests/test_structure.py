"""Structure-aware chunks (ingest/structure.py, corpus.split: structure): on hand-made markdown, on real Sphinx pages
of the Python 3.11 docs (python3.11-doc) and on the shared blog mirror's HTML (skipped when either is absent)."""

from __future__ import annotations

from pathlib import Path

import pytest
from bs4 import BeautifulSoup

from ragserve.config import CorpusConfig
from ragserve.ingest.corpus import documents, split
from ragserve.ingest.crawl import Page
from ragserve.ingest.html import html_to_text
from ragserve.ingest.structure import parse_sections, structure_chunks
from ragserve_ops.testing import HF_SITE

PYDOCS = Path("/usr/share/doc/python3.11/html")
SIZE = 1000


def test_a_comment_in_a_code_block_is_not_a_heading() -> None:
    root = parse_sections("# Title\nintro\n```\n# not a heading\nx = 1\n```\n## Part\nbody")
    (title,) = root.children
    assert title.heading == "Title"
    assert title.units == ["intro", "```\n# not a heading\nx = 1\n```"]
    assert [child.heading for child in title.children] == ["Part"]


def test_small_sibling_sections_merge_under_their_parent() -> None:
    text = "# Guide\nopening line\n## Cats\ncats purr\n## Dogs\ndogs bark\n## Birds\nbirds sing"
    assert structure_chunks(text, "Guide", SIZE, 0) == [
        ("Guide", "# Guide\nopening line\n## Cats\ncats purr\n## Dogs\ndogs bark\n## Birds\nbirds sing")
    ]


def test_a_large_section_is_cut_into_its_subsections_each_with_its_path() -> None:
    long, kittens = "word " * 150, "small cats " * 30  # 750 and 330 characters
    text = f"# Guide\nopening\n## Cats\n{long}\n### Kittens\n{kittens}\n## Dogs\n{long}"
    chunks = structure_chunks(text, "Guide", SIZE, 0)
    assert [header for header, _ in chunks] == ["Guide > Cats", "Guide > Cats > Kittens", "Guide > Dogs"]
    # the page's short opening starts the first subsection's chunk instead of standing alone
    assert chunks[0][1].startswith("# Guide\nopening\n## Cats\nword")
    assert chunks[1][1].startswith("### Kittens\nsmall cats")
    assert all(len(body) <= SIZE for _, body in chunks)


def test_a_title_that_differs_from_the_first_heading_heads_the_path() -> None:
    chunks = structure_chunks("# Guide\nintro", "The Guide site", SIZE, 0)
    assert chunks == [("The Guide site > Guide", "# Guide\nintro")]


def test_a_code_block_is_kept_whole() -> None:
    code = "```\n" + "\n".join(f"print({i})  # line {i}" for i in range(30)) + "\n```"  # ~700 characters
    text = "# Page\n" + "prose line. " * 40 + "\n" + code + "\nafter the code"
    chunks = structure_chunks(text, "Page", SIZE, 0)
    assert any(code in body for _, body in chunks)
    assert all(body.count("```") % 2 == 0 for _, body in chunks)


def test_an_over_long_line_is_cut_by_the_recursive_splitter() -> None:
    chunks = structure_chunks("# Page\n" + "x" * 2500, "Page", SIZE, 100)
    assert len(chunks) >= 3 and all(len(body) <= SIZE for _, body in chunks)


def test_split_structure_starts_every_chunk_with_its_heading_path() -> None:
    page = Page("docs/guide.md", "Guide", "# Guide\nintro\n## Cats\ncats purr")
    (chunk,) = split(documents([page]), CorpusConfig(split="structure"))
    assert chunk.page_content == "Guide\n# Guide\nintro\n## Cats\ncats purr"
    assert chunk.metadata["section"] == "Guide" and chunk.metadata["chunk"] == 0


def sphinx_chunks(page: str) -> tuple[str, list]:
    if not (PYDOCS / page).is_file():
        pytest.skip(f"{PYDOCS / page} is absent: apt-get install python3.11-doc (../shared/corpus/pydocs/README.md)")
    return html_chunks(PYDOCS / page)


def html_chunks(path: Path) -> tuple[str, list]:
    soup = BeautifulSoup(path.read_bytes(), "lxml")
    title = soup.title.get_text(" ", strip=True)
    text = html_to_text(soup)
    return text, split(documents([Page(str(path), title, text)]), CorpusConfig(split="structure"))


def assert_no_text_lost(text: str, chunks: list) -> None:
    """Every line of the page (heading lines included) is in some chunk."""
    joined = "\n".join(chunk.page_content for chunk in chunks)
    assert [line for line in text.splitlines() if line not in joined] == []


def test_library_json_gives_each_function_its_own_chunk_named_by_its_path() -> None:
    text, chunks = sphinx_chunks("library/json.html")
    by_section = {chunk.metadata["section"]: chunk.page_content for chunk in chunks}
    dumps = by_section["json — JSON encoder and decoder > Basic Usage > json.dumps"]
    assert dumps.startswith("json — JSON encoder and decoder > Basic Usage > json.dumps\n### json.dumps(obj, *,")
    assert "Serialize obj to a JSON formatted str" in dumps
    assert "json.loads(s, *, cls=None" not in dumps  # the next entry starts the next chunk
    assert all(len(chunk.page_content) <= SIZE + len(chunk.metadata["section"]) + 1 for chunk in chunks)
    assert all(chunk.page_content.count("```") % 2 == 0 for chunk in chunks)  # no code block cut
    assert "’" in text and "â€" not in text
    assert_no_text_lost(text, chunks)


def test_a_class_page_puts_methods_under_their_class() -> None:
    text, chunks = sphinx_chunks("library/collections.html")
    counter = "collections — Container datatypes > Counter objects > class collections.Counter"
    (most_common,) = [chunk for chunk in chunks if "#### most_common(" in chunk.page_content]  # a method: h4
    assert most_common.metadata["section"] in (counter, f"{counter} > most_common")
    assert any(c.metadata["section"].startswith(f"{counter} > ") for c in chunks)  # a long method: its own path
    assert_no_text_lost(text, chunks)


def test_a_whats_new_page_is_cut_at_its_sections() -> None:
    text, chunks = sphinx_chunks("whatsnew/3.11.html")
    pep657 = [
        c for c in chunks if c.metadata["section"].endswith("PEP 657: Fine-grained error locations in tracebacks")
    ]
    assert pep657 and pep657[0].metadata["section"].startswith("What’s New In Python 3.11 > New Features > ")
    assert_no_text_lost(text, chunks)


def test_the_blog_html_is_cut_at_its_headings() -> None:
    path = HF_SITE / "blog" / "llama3" / "index.html"
    if not path.is_file():
        pytest.skip(f"{path} is absent: the shared blog mirror (../shared/README.md)")
    text, chunks = html_chunks(path)
    sections = [chunk.metadata["section"] for chunk in chunks]
    assert "Welcome Llama 3 - Meta’s new open LLM > What’s new with Llama 3?" in sections
    assert all(s.startswith("Welcome Llama 3 - Meta’s new open LLM") for s in sections)
    assert_no_text_lost(text, chunks)
