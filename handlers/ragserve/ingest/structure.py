"""Structure-aware chunks: cut a page where its author did (sections, API entries), never inside a code block.

Public names: Section, parse_sections, structure_chunks.
Input is the markdown-shaped text that html_to_text writes for HTML pages (and local .md files already are):
`#` heading lines, Sphinx API entries as headings one level under their section (`### json.dumps(obj, ...)`),
code blocks between ``` fences. A page becomes a tree of sections; a section that fits chunk_size is one chunk,
small sibling sections are merged into one chunk under their parent, a section too large for one chunk gives its
own text and each of its subsections apart (recursively). A code block is never cut unless it alone is longer
than chunk_size (then LangChain's RecursiveCharacterTextSplitter cuts it, as it cuts an over-long paragraph).
Every chunk starts with its heading path, `Page title > Section > json.dumps`, so BM25 and the embedder both
see what the text is about (Anthropic's contextual retrieval; heading-aware splitting of structured documents).
Headings stay in the text as `#` lines too: page records (index/pages.py) read them there.

Measured against LangChain's plain splitter on the blog and the Python docs: docs/results/retrieval-quality.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

from langchain_text_splitters import RecursiveCharacterTextSplitter

HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*$")
FENCE = "```"
CARRY_FRACTION = 4  # an opening up to a quarter of a chunk joins the next chunk instead of standing alone
NAME_CHARS = 80  # an API signature names its entry by what precedes "(": json.dumps, class json.JSONEncoder


@dataclass
class Section:
    """A heading (level 0: the page's text before its first heading) with its own lines and subsections."""

    level: int
    heading: str = ""
    units: list[str] = field(default_factory=list)  # lines, or whole fenced code blocks
    children: list[Section] = field(default_factory=list)

    @property
    def name(self) -> str:
        """The heading as a path element: an API signature without its parameters."""
        name = self.heading.split("(", 1)[0].strip() if "(" in self.heading else self.heading
        return name[:NAME_CHARS].strip()

    def own(self) -> list[str]:
        """Its heading line and its own lines, subsections left out."""
        return ([f"{'#' * self.level} {self.heading}"] if self.heading else []) + self.units

    def rendered(self) -> list[str]:
        """Its heading line, its lines and all its subsections'."""
        return self.own() + [line for child in self.children for line in child.rendered()]


def parse_sections(text: str) -> Section:
    """The page as a tree: each `#` line opens a section under the nearest heading of a lower level. Lines inside
    ``` fences are never headings (a Python comment is not a section) and a fenced block is one unit."""
    root = Section(0)
    stack = [root]
    block: list[str] | None = None
    for line in text.splitlines():
        if block is not None:  # inside a code block
            block.append(line)
            if line.strip() == FENCE:
                stack[-1].units.append("\n".join(block))
                block = None
            continue
        if line.strip() == FENCE:
            block = [line]
            continue
        match = HEADING.match(line)
        if not match:
            if line.strip():
                stack[-1].units.append(line)
            continue
        level = len(match.group(1))
        while stack[-1].level >= level:
            stack.pop()
        section = Section(level, match.group(2))
        stack[-1].children.append(section)
        stack.append(section)
    if block is not None:  # an unclosed fence: keep its lines
        stack[-1].units.append("\n".join(block))
    return root


def structure_chunks(
    text: str,
    title: str,
    chunk_size: int,
    chunk_overlap: int,
    cutter: RecursiveCharacterTextSplitter | None = None,
    length: Callable[[str], int] = len,
) -> list[tuple[str, str]]:
    """(heading path, chunk text) pairs in page order; chunk_size bounds each text (the path comes on top).

    cutter: the splitter for a line longer than a chunk; length: how sizes are counted (characters by default; the
    embedding model's tokens with corpus.chunk_unit "tokens": corpus.py passes both, built on its tokenizer)."""
    cutter = cutter or RecursiveCharacterTextSplitter(chunk_size=chunk_size, chunk_overlap=chunk_overlap)
    chunks: list[tuple[str, str]] = []
    _emit(parse_sections(text), [title] if title else [], _Cut(chunk_size, cutter, length), chunks, [])
    return chunks


@dataclass(frozen=True)
class _Cut:
    """How chunks are bounded: the size, the splitter for an over-long line, and the length function."""

    size: int
    cutter: RecursiveCharacterTextSplitter
    length: Callable[[str], int]


def _emit(
    section: Section,
    path: list[str],
    cut: _Cut,
    out: list[tuple[str, str]],
    carry: list[str],
) -> None:
    """Group the section's own text and its subsections greedily into chunks of at most size characters; a part
    larger than size is cut apart: its own text by lines, a subsection by recursion with its name on the path.
    carry: a parent's short opening (its heading and a line or two) that starts this section's first chunk
    rather than stand alone."""
    group: list[tuple[Section | None, str]] = [(None, text) for text in carry]

    def flush() -> None:
        if group:
            alone = len(group) == 1 and group[0][0] is not None  # one subsection: the chunk is about it
            header = " > ".join(_child_path(path, group[0][0].name) if alone else path)
            out.append((header, "\n".join(text for _, text in group)))
            group.clear()

    size, length = cut.size, cut.length
    own = section.own()
    parts: list[tuple[Section | None, str]] = [(None, "\n".join(own))] if own else []
    parts += [(child, "\n".join(child.rendered())) for child in section.children]
    for child, text in parts:
        if length(text) > size:
            if child is None:
                lines = [t for _, t in group] + own
                group.clear()
                _pack(lines, cut, " > ".join(path), out)
                continue
            opening = [t for _, t in group] if _length(group, length) <= size // CARRY_FRACTION else []
            if not opening:
                flush()
            group.clear()
            _emit(child, _child_path(path, child.name), cut, out, opening)
            continue
        if group and _length(group, length) + 1 + length(text) > size:
            flush()
        group.append((child, text))
    flush()


def _length(group: list[tuple[Section | None, str]], length: Callable[[str], int]) -> int:
    return length("\n".join(text for _, text in group))


def _pack(lines: list[str], cut: _Cut, header: str, out: list) -> None:
    """Lines (and whole code blocks) packed into chunks of at most size; a longer one is cut by the splitter."""
    size, length = cut.size, cut.length
    group: list[str] = []
    for line in lines:
        pieces = cut.cutter.split_text(line) if length(line) > size else [line]
        for piece in pieces:
            if group and length("\n".join(group)) + 1 + length(piece) > size:
                out.append((header, "\n".join(group)))
                group = []
            group.append(piece)
    if group:
        out.append((header, "\n".join(group)))


def _child_path(path: list[str], name: str) -> list[str]:
    """The path under a section; a page's h1 that repeats its title ("json — JSON encoder and decoder" under the
    title "json — JSON encoder and decoder — Python 3.11 documentation") replaces it rather than repeat it."""
    if len(path) == 1 and _words(name) and _words(path[0]).startswith(_words(name)):
        return [name]
    return [*path, name]


def _words(text: str) -> str:
    return re.sub(r"\W", "", text.casefold())
