"""Corpus loading and chunking: a crawled site or local files -> ordered pages -> LangChain Documents.

Public names: read_pages, documents, load_documents, split, CorpusError.
read_pages gives crawl.Page records (for a file, `url` is its path relative to the corpus folder's
parent), revalidating an earlier read's pages where the source allows (crawl.py). Every Document
carries metadata `source` (URL or path), `title`, for HTML pages that state them `published`
(YYYY-MM-DD), `authors` and `tags`, for crawled pages `fetched` (when the text was downloaded), and,
after split, `chunk` (its position in the source).
Output order is deterministic: pages in crawl order, files sorted by path.
Splitting is LangChain's RecursiveCharacterTextSplitter (chunk_size counted in characters, or in
tokens of the embedding model's tokenizer with chunk_unit "tokens").
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from bs4 import BeautifulSoup
from langchain_core.documents import Document
from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter
from transformers import AutoTokenizer

from ragserve.config import CorpusConfig
from ragserve.ingest.crawl import Page, crawl, excluded, included
from ragserve.ingest.html import html_to_text
from ragserve.ingest.metadata import page_metadata
from ragserve.ingest.structure import structure_chunks

logger = logging.getLogger(__name__)

HEADINGS = [("#", "h1"), ("##", "h2"), ("###", "h3")]
TEXT_SUFFIXES = {".md", ".markdown", ".txt", ".rst"}
HTML_SUFFIXES = {".html", ".htm"}


class CorpusError(RuntimeError):
    """The source gave no usable text; the message names the source."""


def read_pages(cfg: CorpusConfig, known: Mapping[str, Page] | None = None) -> list[Page]:
    """Crawl cfg.source when it is a URL (revalidating known pages), else read the local file or folder."""
    if cfg.is_url:
        limits = (cfg.max_depth, cfg.max_pages, cfg.max_page_bytes, cfg.timeout_s)
        return crawl(cfg.source, *limits, cfg.extract, known, cfg.exclude, cfg.include, cfg.robots)
    root = Path(cfg.source)
    files = _local_files(root, cfg.exclude, cfg.include)
    pages = [_read_file(path, root.parent, cfg.extract) for path in files]
    pages = [page for page in pages if page.text]
    if not pages:
        within = " matching corpus.include" if cfg.include else ""
        raise CorpusError(f"no .md/.txt/.html text{within} found in {cfg.source}")
    return pages


def documents(pages: Sequence[Page]) -> list[Document]:
    """One Document per page: its text, with source, title, page metadata and (crawled pages) fetch time."""
    fetched = [{"fetched": page.fetched} if page.fetched else {} for page in pages]
    return [
        Document(page.text, metadata={"source": page.url, "title": page.title, **page.metadata, **when})
        for page, when in zip(pages, fetched, strict=True)
    ]


def load_documents(cfg: CorpusConfig) -> list[Document]:
    """read_pages as Documents."""
    return documents(read_pages(cfg))


def split(documents: list[Document], cfg: CorpusConfig, tokenizer_path: str | None = None) -> list[Document]:
    """Cut documents into overlapping chunks; each keeps its source, title and position.

    With chunk_unit "tokens", lengths are counted by the tokenizer at tokenizer_path (the
    embedding model's), so a chunk never exceeds what the model reads.

    With split == "structure" (structure.py) a document is cut at its sections and API entries, small
    sections merged under their parent, code blocks kept whole, and every chunk starts with its heading path
    (chunk_header is implied; chunk_size counts chunk_unit as for the other modes).

    With split == "sections" a document is first cut at its markdown headings (crawled pages get
    `#` headings from html_to_text), so no chunk spans two sections; with chunk_header each chunk
    starts with a "title > section" line, so a chunk that says "it has a 128K context" still
    names what "it" is.
    """
    splitter, length = _splitter(cfg, tokenizer_path)
    if cfg.split == "structure":
        return _structure_split(documents, cfg, splitter, length)
    chunks = []
    for document in documents:
        pieces = [
            (header, text)
            for header, section in _sections(document, cfg.split == "sections")
            for text in splitter.split_text(section)
        ]
        for position, (header, text) in enumerate(pieces):
            content = f"{header}\n{text}" if cfg.chunk_header and header else text
            chunks.append(Document(content, metadata={**document.metadata, "chunk": position}))
    return chunks


def _structure_split(
    documents: list[Document], cfg: CorpusConfig, cutter: RecursiveCharacterTextSplitter, length: Callable[[str], int]
) -> list[Document]:
    """structure.py's chunks, each starting with its heading path (also in metadata `section`)."""
    chunks = []
    for document in documents:
        title = document.metadata.get("title", "")
        pieces = structure_chunks(document.page_content, title, cfg.chunk_size, cfg.chunk_overlap, cutter, length)
        for position, (header, text) in enumerate(pieces):
            content = f"{header}\n{text}" if header else text
            chunks.append(Document(content, metadata={**document.metadata, "section": header, "chunk": position}))
    return chunks


def _splitter(
    cfg: CorpusConfig, tokenizer_path: str | None
) -> tuple[RecursiveCharacterTextSplitter, Callable[[str], int]]:
    """LangChain's splitter for cfg's unit, and the length function it counts with (characters or tokens)."""
    if cfg.chunk_unit == "chars":
        return RecursiveCharacterTextSplitter(chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap), len
    if tokenizer_path is None:
        raise ValueError("corpus.chunk_unit 'tokens' needs the embedding model's tokenizer")
    tokenizer = AutoTokenizer.from_pretrained(tokenizer_path)

    def tokens(text: str) -> int:  # as from_huggingface_tokenizer counts
        return len(tokenizer.tokenize(text))

    splitter = RecursiveCharacterTextSplitter(
        chunk_size=cfg.chunk_size, chunk_overlap=cfg.chunk_overlap, length_function=tokens
    )
    return splitter, tokens


def _sections(document: Document, by_heading: bool) -> list[tuple[str, str]]:
    """(header line, text) per section: the header is the title plus the headings above the text."""
    title = document.metadata.get("title", "")
    if not by_heading:
        return [(title, document.page_content)]
    splitter = MarkdownHeaderTextSplitter(HEADINGS, strip_headers=True)
    sections = []
    for section in splitter.split_text(document.page_content):
        path = [section.metadata[name] for _, name in HEADINGS if name in section.metadata]
        if path and _same_words(path[0], title):  # the page's h1 repeats its title
            path = path[1:]
        sections.append((" > ".join([title, *path]) if title else " > ".join(path), section.page_content))
    return sections


def _local_files(source: Path, exclude: Sequence[str] = (), include: Sequence[str] = ()) -> list[Path]:
    """The files to read: source itself, or a folder's text and HTML files (sorted), less exclude, within include."""
    if not source.exists():
        raise CorpusError(f"corpus.source {source} does not exist")
    if source.is_file():
        candidates = [source]
    else:
        relative = {p: p.relative_to(source).as_posix() for p in source.rglob("*") if p.is_file()}
        candidates = sorted(
            p for p, path in relative.items() if not excluded(path, exclude) and included(path, include)
        )
    return [p for p in candidates if p.suffix.lower() in TEXT_SUFFIXES | HTML_SUFFIXES]


def _read_file(path: Path, base: Path, extract: str) -> Page:
    raw = path.read_text(encoding="utf-8", errors="replace")
    if path.suffix.lower() in HTML_SUFFIXES:
        soup = BeautifulSoup(raw, "lxml")
        title_tag = soup.find("title") or soup.find("h1")
        title = title_tag.get_text(" ", strip=True) if title_tag else path.stem
        metadata = page_metadata(soup)  # before html_to_text, which drops the byline block
        text = html_to_text(soup, extract)
    else:
        text = raw.strip()
        title = _markdown_title(text) or path.stem
        metadata = {}
    # A path relative to the corpus folder's parent ("docs/x.md") reads the same on every machine.
    return Page(str(path.relative_to(base)), title, text, metadata)


def _markdown_title(text: str) -> str | None:
    for line in text.splitlines():
        if line.startswith("# "):
            return line[2:].strip()
    return None


def _same_words(a: str, b: str) -> bool:
    return re.sub(r"\W", "", a.casefold()) == re.sub(r"\W", "", b.casefold())
