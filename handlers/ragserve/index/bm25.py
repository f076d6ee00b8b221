"""Lexical retrieval: a BM25 index (bm25s) over the same chunks as the FAISS index.

Public names: BM25, BM25Scheme, identifier_terms.
Names and numbers ("128,256", "405B", "Llama 3.1") decide many factual questions, and dense
embeddings blur them; BM25 catches them, provided its tokenizer keeps them: bm25s' default
pattern drops one-character tokens, so "Llama 3.1", "Llama 3" and "Llama 2" all become "llama"
(measured in `make eval`: keeping numbers lifts hit@5 from 0.85 to 0.94 with BM25 alone).

The corpus includes the Python 3.11 documentation, whose questions name identifiers, which word
terms break apart or lose: "json.dumps" becomes "json" and "dumps" (as in any sentence saying
"dumps JSON"), the option "-X" becomes the word "x", and "skip_keys" or "JSONDecoder" stay one
stemmed word that a question saying "skip keys" or "JSON decoder" never matches. So with
`identifiers` on (BM25Scheme; `index.bm25_identifiers`) a text's terms are its stemmed words and
numbers as before plus, for every identifier in it (identifier_terms), the identifier whole and
unstemmed ("json.dumps", "-X") and the parts of snake_case words and of a dotted name's CamelCase
part as words ("skip", "key"; "path", "like" of "os.PathLike"). Questions get the same terms, so a question
naming "json.dumps" ranks the chunk that names it above one that says "json" and "dumps" apart.

The BM25 index is built with the FAISS index and saved beside it as numpy arrays and JSON
(bm25s writes no pickle), so workers load it instead of rebuilding it.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import bm25s
import numpy as np
import Stemmer
from bm25s.stopwords import STOPWORDS_EN

from ragserve.config import IndexConfig
from ragserve.ingest.metadata import date_terms

STEMMER_LANGUAGE = "english"
WORDS_PATTERN = r"(?u)\b\w\w+\b"  # bm25s' default: words of two or more characters
# Decimal and grouped numbers whole ("3.1", "1.4.0", "128,256"), then every word, single
# characters included ("3", "8b", "4-bit" -> "4", "bit").
NUMBERS_PATTERN = r"(?u)\d+(?:[.,]\d+)+|\b\w+\b"
# Identifier-looking tokens (identifier_terms), matched on the text as written (case matters):
# - an option: "-" or "--" then a letter, at a word's start ("-X", "-m", "--no-site", "-Wdefault");
#   not the "-bit" of "4-bit" or the "-blocking" of "non-blocking" (a word character before it);
# - a dotted name: identifiers joined by dots ("json.dumps", "sha256.digest", "os.PathLike"); each
#   part starts with a letter or "_", so "3.1" and "v3.1" are no names, and a sentence's final
#   period has no part after it;
# - a snake_case word ("skip_keys", "__init_subclass__", "_thread") or a CamelCase one (split only inside a
#   dotted name, identifier_terms): a capital
#   after a small letter ("ThreadPoolExecutor", "macOS") or before one after capitals ("JSONDecoder");
#   "Python", "JSON", "json" and plural acronyms ("GPUs", "LLMs") are plain words.
IDENTIFIER_PATTERN = re.compile(
    r"(?P<option>(?<![\w-])--?[A-Za-z]\w*(?:-\w+)*)"
    r"|(?<![\w.])(?=[A-Za-z_])(?P<name>"
    r"\w+(?:\.[A-Za-z_]\w*)+"
    r"|\w*_\w*"
    r"|\w*(?:[a-z][A-Z]|[A-Z][A-Z](?!s\b)[a-z])\w*)"
)
# A snake_case or CamelCase word's parts: "JSONDecoder" -> JSON, Decoder; "skip_keys" -> skip, keys.
PART_PATTERN = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")
CAMEL_PATTERN = re.compile(r"[a-z][A-Z]|[A-Z][A-Z](?!s\b)[a-z]")
STOPWORDS = frozenset(STOPWORDS_EN)


def identifier_terms(text: str, stem: Callable[[list[str]], list[str]] | None = None) -> list[str]:
    """The extra BM25 terms of the identifiers in `text`, in the order they occur.

    - an option, whole and with its case: "-X" -> "-X"; "--no-site" -> "--no-site";
    - a dotted name, whole and lower-cased: "json.dumps" -> "json.dumps" (its parts are words already);
      abbreviations of one-letter parts ("e.g.", "i.e.", "U.S.") are no names;
    - a snake_case word, and a CamelCase part of a dotted name, as its parts: "skip_keys" -> "skip", "keys";
      "os.PathLike" -> "os.pathlike", "path", "like" (the whole word is a word term already).
    A CamelCase word alone is not split: on the blog mirror, product names ("SageMaker", "OpenAI", "MoE",
    "vLLM") split into noise words ("sage", "open", "mo", "v") that cost 0.06 qa_dev hit@1 in `make eval`.
    Parts are lower-cased, English stopwords dropped and stemmed with `stem` (PyStemmer's `stemWords`;
    None keeps them as written), as bm25s treats words; whole identifiers are names, never stemmed.
    """
    terms: list[str] = []
    for match in IDENTIFIER_PATTERN.finditer(text):
        option, name = match.group("option", "name")
        if option:
            terms.append(option)
            continue
        segments = name.split(".")
        dotted = len(segments) > 1
        if dotted:
            if max(map(len, segments)) == 1:
                continue
            terms.append(name.lower())
        for segment in segments:
            if "_" not in segment and not (dotted and CAMEL_PATTERN.search(segment)):
                continue
            parts = [p.lower() for p in PART_PATTERN.findall(segment)]
            if not any(p.isalpha() for p in parts):
                continue  # "____", "_1"
            parts = [p for p in parts if p not in STOPWORDS]
            terms += stem(parts) if stem and parts else parts
    return terms


@dataclass(frozen=True)
class BM25Scheme:
    """How chunks become BM25 terms; each scheme has its own folder in an index. The defaults are the index
    section's (config/rag.py IndexConfig bm25_*), their one home."""

    numbers: bool = IndexConfig.bm25_numbers  # keep numbers and version strings as terms (NUMBERS_PATTERN)
    title: bool = IndexConfig.bm25_title  # index each chunk's page title with its text
    metadata: bool = IndexConfig.bm25_metadata  # and its page's date (as words), authors and tags
    identifiers: bool = IndexConfig.bm25_identifiers  # and every identifier's terms (identifier_terms)

    @property
    def folder(self) -> str:
        fields = ["title"] * self.title + ["meta"] * self.metadata + ["idents"] * self.identifiers
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


class BM25:
    """BM25 over chunk texts, addressed by the chunks' positions in the FAISS index."""

    def __init__(self, retriever: bm25s.BM25, scheme: BM25Scheme) -> None:
        self.retriever = retriever
        self.scheme = scheme
        self.stemmer = Stemmer.Stemmer(STEMMER_LANGUAGE)

    @classmethod
    def build(
        cls, texts: Sequence[str], headers: Sequence[str], scheme: BM25Scheme, k1: float = 1.5, b: float = 0.75
    ) -> BM25:
        """BM25 over each header + text (headers from BM25Scheme.header; "" for none). k1, b: bm25s' defaults,
        which the index keeps (benchmarks/page_signals.py measured others on both corpora: no gain)."""
        lexical = cls(bm25s.BM25(k1=k1, b=b), scheme)
        texts = [f"{header}\n{text}" if header else text for header, text in zip(headers, texts, strict=True)]
        vocab: dict[str, int] = {}  # in order of first use: the same texts give the same files
        ids = [[vocab.setdefault(term, len(vocab)) for term in terms] for terms in lexical.terms(texts)]
        lexical.retriever.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)
        return lexical

    def save(self, folder: Path) -> list[Path]:
        """Write the index files; returns them (the manifest checksums each)."""
        self.retriever.save(str(folder))
        return sorted(p for p in folder.iterdir() if p.is_file())

    @classmethod
    def load(cls, folder: Path, scheme: BM25Scheme) -> BM25:
        return cls(bm25s.BM25.load(str(folder), load_corpus=False, allow_pickle=False), scheme)

    @property
    def size(self) -> int:
        """How many texts it scores."""
        return int(self.retriever.scores["num_docs"])

    def scores(self, questions: list[str]) -> np.ndarray:
        """(n questions, n chunks) BM25 scores; 0 where a chunk shares no term with the question."""
        total = self.size
        rows = []
        # Query terms as strings: bm25s maps them through the index's own vocabulary.
        for terms in self.terms(questions):
            known = self.retriever.get_tokens_ids(terms)
            rows.append(self.retriever.get_scores(known) if known else np.zeros(total, np.float32))
        return np.stack(rows) if rows else np.empty((0, total), np.float32)

    def terms(self, texts: list[str]) -> list[list[str]]:
        """Each text's BM25 terms: stemmed words (and numbers), then its identifiers' terms."""
        words = bm25s.tokenize(
            texts,
            token_pattern=self.scheme.token_pattern,
            stopwords="en",
            stemmer=self.stemmer,
            return_ids=False,
            show_progress=False,
        )
        if not self.scheme.identifiers:
            return words
        return [
            terms + identifier_terms(text, self.stemmer.stemWords) for terms, text in zip(words, texts, strict=True)
        ]
