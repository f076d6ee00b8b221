"""Sentence windows: a few sentences of a chunk, each its own vector, beside the chunk's vector.

Public names: sentence_windows, WindowVectors, windows_folder.
One vector for a 1000-character chunk averages every topic in it; a question about one detail
matches the two or three sentences that state it better. Each chunk's windows (`size` sentences,
a new window every `stride` sentences) are embedded once with the index and saved beside it, and
a chunk's window score is its best window's cosine (retrieval.py mixes it into the dense score).
Measured in `make eval` (docs/results/retrieval-quality.md): dev hit@1 0.69 -> 0.73, qa_public 0.68 -> 0.71,
the indirect set unchanged; it roughly doubles the index build, since every sentence is embedded once more.
Sentences are cut with a regular expression: LangChain's NLTK and spaCy splitters need data
packages that are downloaded at run time, which an offline build cannot do.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
from langchain_core.documents import Document

from ragserve.index.vectorsets import VectorSet, embed_with_progress

if TYPE_CHECKING:
    from ragserve.embedding.encoder import Encoder

SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")  # after . ! ? and at every line (headings, list items)


def windows_folder(size: int, stride: int) -> str:
    return f"windows-{size}-{stride}"


def sentence_windows(text: str, size: int, stride: int) -> list[str]:
    """Runs of `size` sentences starting every `stride` sentences; the last run reaches the end."""
    sentences = [s.strip() for s in SENTENCE_BREAK.split(text) if s.strip()]
    if len(sentences) <= size:
        return [" ".join(sentences)] if sentences else []
    starts = list(range(0, len(sentences) - size + 1, stride))
    if starts[-1] + size < len(sentences):  # the stride skipped the tail: one more window ends there
        starts.append(len(sentences) - size)
    return [" ".join(sentences[start : start + size]) for start in starts]


class WindowVectors(VectorSet):
    """Every chunk's sentence windows embedded; owner = chunk position."""

    @classmethod
    def embed(cls, chunks: Sequence[Document], encoder: Encoder, size: int, stride: int) -> WindowVectors:
        texts = [(i, w) for i, chunk in enumerate(chunks) for w in sentence_windows(chunk.page_content, size, stride)]
        vectors = embed_with_progress(encoder, [text for _, text in texts], "sentence windows")
        return cls(vectors, np.array([i for i, _ in texts], dtype=np.int64))
