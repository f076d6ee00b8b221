"""Lexical retrieval: a BM25 index (bm25s) over the same chunks as the FAISS index.

Public names: Lexical, LexicalScheme.
Names and numbers ("128,256", "405B", "Llama 3.1") decide many factual questions, and dense
embeddings blur them; BM25 catches them, provided its tokenizer keeps them: bm25s' default
pattern drops one-character tokens, so "Llama 3.1", "Llama 3" and "Llama 2" all become "llama"
(measured in `make eval`: keeping numbers lifts hit@5 from 0.85 to 0.94 with BM25 alone).
The BM25 index is built with the FAISS index and saved beside it as numpy arrays and JSON
(bm25s writes no pickle), so workers load it instead of rebuilding it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

from ragserve.ingest.metadata import date_terms

STEMMER_LANGUAGE = "english"
WORDS_PATTERN = r"(?u)\b\w\w+\b"  # bm25s' default: words of two or more characters
# Decimal and grouped numbers whole ("3.1", "1.4.0", "128,256"), then every word, single
# characters included ("3", "8b", "4-bit" -> "4", "bit").
NUMBERS_PATTERN = r"(?u)\d+(?:[.,]\d+)+|\b\w+\b"


@dataclass(frozen=True)
class LexicalScheme:
    """How chunks become BM25 terms; each scheme has its own folder in an index."""

    numbers: bool = True  # keep numbers and version strings as terms (NUMBERS_PATTERN)
    title: bool = True  # index each chunk's page title with its text
    metadata: bool = False  # and its page's date (as words), authors and tags

    @property
    def folder(self) -> str:
        fields = ["title"] * self.title + ["meta"] * self.metadata
        return "bm25-" + "-".join(["numbers" if self.numbers else "words", *fields])

    def header(self, metadata: Mapping[str, str]) -> str:
        """What this scheme indexes with a chunk's text, from the chunk's metadata."""
        fields = [metadata.get("title", "")] if self.title else []
        if self.metadata:
            fields += [date_terms(metadata.get("published", "")), metadata.get("authors", ""), metadata.get("tags", "")]
        return "\n".join(field for field in fields if field)

    @property
    def token_pattern(self) -> str:
        return NUMBERS_PATTERN if self.numbers else WORDS_PATTERN


class Lexical:
    """BM25 over chunk texts, addressed by the chunks' positions in the FAISS index."""

    def __init__(self, retriever: bm25s.BM25, scheme: LexicalScheme) -> None:
        self.retriever = retriever
        self.scheme = scheme
        self.stemmer = Stemmer.Stemmer(STEMMER_LANGUAGE)

    @classmethod
    def build(cls, texts: Sequence[str], headers: Sequence[str], scheme: LexicalScheme) -> Lexical:
        """BM25 over each header + text (headers from LexicalScheme.header; "" for none)."""
        lexical = cls(bm25s.BM25(), scheme)
        texts = [f"{header}\n{text}" if header else text for header, text in zip(headers, texts, strict=True)]
        lexical.retriever.index(lexical._tokenize(texts), show_progress=False)
        return lexical

    def save(self, folder: Path) -> list[Path]:
        """Write the index files; returns them (the manifest checksums each)."""
        self.retriever.save(str(folder))
        return sorted(p for p in folder.iterdir() if p.is_file())

    @classmethod
    def load(cls, folder: Path, scheme: LexicalScheme) -> Lexical:
        return cls(bm25s.BM25.load(str(folder), load_corpus=False, allow_pickle=False), scheme)

    def scores(self, questions: list[str]) -> np.ndarray:
        """(n questions, n chunks) BM25 scores; 0 where a chunk shares no term with the question."""
        total = int(self.retriever.scores["num_docs"])
        rows = []
        # Query terms as strings: bm25s maps them through the index's own vocabulary.
        for terms in self._tokenize(questions, return_ids=False):
            known = self.retriever.get_tokens_ids(terms)
            rows.append(self.retriever.get_scores(known) if known else np.zeros(total, np.float32))
        return np.stack(rows) if rows else np.empty((0, total), np.float32)

    def _tokenize(self, texts: list[str], return_ids: bool = True) -> bm25s.tokenization.Tokenized | list[list[str]]:
        return bm25s.tokenize(
            texts,
            token_pattern=self.scheme.token_pattern,
            stopwords="en",
            stemmer=self.stemmer,
            return_ids=return_ids,
            show_progress=False,
        )
