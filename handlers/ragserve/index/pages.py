"""Page records: what identifies a page (title, date, authors, tags, headings, first paragraph).

Public names: Pages, PageRecord, page_records, PageVectors, page_scheme, PAGES_FOLDER.
A question that describes its subject ("Meta's April 2024 open models") matches a page's identity
better than any one chunk of it. The records are derived from the index's own chunks (their
metadata and the `#` heading lines that main-content extraction writes), so an index gains them
without re-crawling or re-embedding its chunks. A version's Pages are its records, their BM25 and their
vectors; the builder makes and saves all three (pages/), so a worker loads them and builds nothing (the page
BM25 took 0.32 s per load on the whole Python docs when workers built it). The records themselves are derived
again at load (0.09 s there): they are a pure function of the chunks, which the version already holds.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from langchain_core.documents import Document

from ragserve.index.bm25 import BM25, BM25Scheme
from ragserve.index.vectorsets import VectorSet, embed_with_progress
from ragserve.ingest.metadata import date_terms

if TYPE_CHECKING:
    from ragserve.embedding.encoder import Encoder

HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*$", re.MULTILINE)
LEAD_CHARS = 500  # the opening of a page: what it announces
PAGES_FOLDER = "pages"  # in a version folder: the page vectors, and the page BM25 in its scheme's folder


class PagesMissing(FileNotFoundError):
    """A version folder without its page BM25 or vectors; the store turns it into an error naming the command."""


@dataclass(frozen=True)
class PageRecord:
    source: str
    title: str
    published: str  # YYYY-MM-DD or ""
    authors: str
    tags: str
    headings: tuple[str, ...]
    lead: str
    chunks: tuple[int, ...]  # positions of the page's chunks in the index

    def lexical_text(self) -> str:
        """Every field as words, the date in the ways people write it (for BM25)."""
        fields = [self.title, date_terms(self.published), self.authors, self.tags, *self.headings, self.lead]
        return "\n".join(field for field in fields if field)

    def dense_texts(self) -> list[str]:
        """One text per vector: the title, each heading under it, the lead (each its own vector)."""
        texts = [self.title, *(f"{self.title}: {heading}" for heading in self.headings), self.lead]
        return [text for text in dict.fromkeys(texts) if text]


class PageVectors(VectorSet):
    """The dense side of page records: one vector per title, heading and lead; owner = page position.

    Embedded once with the index (tens of short texts per page) and saved with it, so a worker
    loads them instead of embedding at start.
    """

    @classmethod
    def embed(cls, chunks: Sequence[Document], encoder: Encoder) -> PageVectors:
        texts = [(page, text) for page, record in enumerate(page_records(chunks)) for text in record.dense_texts()]
        vectors = embed_with_progress(encoder, [text for _, text in texts], "page titles, headings and leads")
        return cls(vectors, np.array([page for page, _ in texts], dtype=np.int64))


def page_records(chunks: Sequence[Document]) -> list[PageRecord]:
    """One record per source, in first-chunk order."""
    by_source: dict[str, list[int]] = {}
    for position, chunk in enumerate(chunks):
        by_source.setdefault(chunk.metadata.get("source", ""), []).append(position)
    return [_record(source, [chunks[i] for i in positions], positions) for source, positions in by_source.items()]


def _record(source: str, chunks: list[Document], positions: list[int]) -> PageRecord:
    meta = chunks[0].metadata
    title = meta.get("title", "")
    headings = [h for chunk in chunks for h in HEADING.findall(chunk.page_content)]
    headings = [h for h in dict.fromkeys(headings) if h.casefold() != title.casefold()]
    return PageRecord(
        source=source,
        title=title,
        published=meta.get("published", ""),
        authors=meta.get("authors", ""),
        tags=meta.get("tags", ""),
        headings=tuple(headings),
        lead=_lead(chunks[0].page_content),
        chunks=tuple(positions),
    )


def _lead(text: str) -> str:
    """The first paragraphs of a page, headings left out."""
    body = HEADING.sub("", text).strip()
    return body[:LEAD_CHARS].rsplit(" ", 1)[0] if len(body) > LEAD_CHARS else body


def page_scheme(chunk_scheme: BM25Scheme) -> BM25Scheme:
    """The page records' BM25 terms: the chunks' words, numbers and identifiers; no header (a record's own fields
    are its title, date, authors and tags)."""
    return BM25Scheme(numbers=chunk_scheme.numbers, title=False, metadata=False, identifiers=chunk_scheme.identifiers)


@dataclass
class Pages:
    """A version's page level: one record per page, the records' BM25 (rows in record order) and their vectors
    (each vector's owner is a page position)."""

    records: list[PageRecord]
    bm25: BM25
    vectors: PageVectors

    @classmethod
    def build(cls, chunks: Sequence[Document], encoder: Encoder, chunk_scheme: BM25Scheme) -> Pages:
        """Records from the chunks, their BM25 (milliseconds per hundred pages), their vectors embedded."""
        records = page_records(chunks)
        bm25 = BM25.build([r.lexical_text() for r in records], [""] * len(records), page_scheme(chunk_scheme))
        return cls(records, bm25, PageVectors.embed(chunks, encoder))

    def save(self, folder: Path) -> list[Path]:
        """Write the vectors and the BM25 under folder (a version's pages/); returns the files written."""
        return self.vectors.save(folder) + self.bm25.save(folder / self.bm25.scheme.folder)

    @classmethod
    def load(cls, folder: Path, chunks: Sequence[Document], chunk_scheme: BM25Scheme) -> Pages:
        """What save wrote, with the records derived from the version's chunks; PagesMissing when it is absent."""
        scheme = page_scheme(chunk_scheme)
        if not (folder / "vectors.npy").is_file() or not (folder / scheme.folder).is_dir():
            raise PagesMissing(f"{folder} has no page vectors or page BM25 ({scheme.folder})")
        records = page_records(chunks)
        bm25 = BM25.load(folder / scheme.folder, scheme)
        if bm25.size != len(records):
            raise PagesMissing(f"{folder / scheme.folder} scores {bm25.size} pages, the chunks have {len(records)}")
        return cls(records, bm25, PageVectors.load(folder))

    def page_of_chunks(self, count: int) -> np.ndarray:
        """(count,) the page position of every chunk."""
        owner = np.zeros(count, dtype=np.int64)
        for page, record in enumerate(self.records):
            owner[list(record.chunks)] = page
        return owner
