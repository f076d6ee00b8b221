"""Sentence windows: a few sentences of a chunk, each its own vector, beside the chunk's vector.

Public names: sentence_windows, sentence_window_spans, WindowVectors, windows_folder.
One vector for a 1000-character chunk averages every topic in it; a question about one detail
matches the two or three sentences that state it better. Each chunk's windows (`size` sentences,
a new window every `stride` sentences) are embedded once with the index and saved beside it, and
a chunk's window score is its best window's cosine (retrieval.py mixes it into the dense score).
Measured in `make eval` (docs/results/retrieval-quality.md): 3 sentences every 3 (the default) lift dev hit@1
0.69 -> 0.71 and qa_public 0.68 -> 0.71 for 5.6 more texts per chunk to embed; 3 every 2 (7.6) gained 0.01 more.
`index.window_mode` says how a window gets its vector. "encoded": the window's text goes through the
encoder on its own (5.6 more texts per chunk at 3/3). "pooled": the window is the mean of the chunk's
own token embeddings over the window's characters (late chunking, Günther et al. 2024, arXiv:2409.04701),
taken from the forward pass that embeds the chunk, so windows cost no extra pass (encoder.embed_spans).
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
    from ragserve.embedding.cache import EmbeddingCache
    from ragserve.embedding.encoder import Encoder

SENTENCE_BREAK = re.compile(r"(?<=[.!?])\s+|\n+")  # after . ! ? and at every line (headings, list items)


def windows_folder(size: int, stride: int, mode: str = "encoded") -> str:
    return f"windows-{size}-{stride}" + ("" if mode == "encoded" else f"-{mode}")


def sentence_windows(text: str, size: int, stride: int) -> list[str]:
    """Runs of `size` sentences starting every `stride` sentences; the last run reaches the end."""
    sentences = [s.strip() for s in SENTENCE_BREAK.split(text) if s.strip()]
    if len(sentences) <= size:
        return [" ".join(sentences)] if sentences else []
    starts = list(range(0, len(sentences) - size + 1, stride))
    if starts[-1] + size < len(sentences):  # the stride skipped the tail: one more window ends there
        starts.append(len(sentences) - size)
    return [" ".join(sentences[start : start + size]) for start in starts]


def sentence_window_spans(text: str, size: int, stride: int) -> list[tuple[int, int]]:
    """The same windows as sentence_windows, as (start, end) character spans of text (for pooled windows)."""
    sentences = []  # (start, end) of each stripped sentence
    start = 0
    for cut in [*SENTENCE_BREAK.finditer(text), None]:
        end = cut.start() if cut else len(text)
        piece = text[start:end]
        if piece.strip():
            left = start + len(piece) - len(piece.lstrip())
            sentences.append((left, left + len(piece.strip())))
        start = cut.end() if cut else len(text)
    if len(sentences) <= size:
        return [(sentences[0][0], sentences[-1][1])] if sentences else []
    starts = list(range(0, len(sentences) - size + 1, stride))
    if starts[-1] + size < len(sentences):
        starts.append(len(sentences) - size)
    return [(sentences[first][0], sentences[first + size - 1][1]) for first in starts]


class WindowVectors(VectorSet):
    """Every chunk's sentence windows embedded; owner = chunk position."""

    @classmethod
    def embed(
        cls,
        chunks: Sequence[Document],
        encoder: Encoder | EmbeddingCache,
        size: int,
        stride: int,
        mode: str = "encoded",
    ) -> WindowVectors:
        """mode "encoded": each window's text embedded on its own; "pooled": from its chunk's token embeddings."""
        if mode == "pooled":
            spans = [sentence_window_spans(chunk.page_content, size, stride) for chunk in chunks]
            _, per_chunk = encoder.embed_spans([chunk.page_content for chunk in chunks], spans)
            owner = np.array([i for i, vectors in enumerate(per_chunk) for _ in range(len(vectors))], dtype=np.int64)
            dim = encoder.dimension
            return cls(np.concatenate([*per_chunk, np.empty((0, dim), np.float32)]).astype(np.float32), owner)
        texts = [(i, w) for i, chunk in enumerate(chunks) for w in sentence_windows(chunk.page_content, size, stride)]
        vectors = embed_with_progress(encoder, [text for _, text in texts], "sentence windows")
        return cls(vectors, np.array([i for i, _ in texts], dtype=np.int64))
