from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ragserve.index.lexical import Lexical, LexicalScheme

TEXTS = [
    "Llama 3 has a context length of 8K tokens.",
    "Llama 3.1 has a context length of 128K tokens.",
    "Llama 2 has a context length of 4K tokens.",
    "It was trained on 15 trillion tokens.",
]
TITLES = ["Llama 3", "Llama 3.1", "Llama 2", "Gemma 2"]


def best(lexical: Lexical, question: str) -> int:
    return int(np.argmax(lexical.scores([question])[0]))


def build(scheme: LexicalScheme) -> Lexical:
    return Lexical.build(TEXTS, [scheme.header({"title": title}) for title in TITLES], scheme)


def test_keeping_numbers_tells_model_versions_apart() -> None:
    numbers = build(LexicalScheme(numbers=True, title=False))
    assert best(numbers, "What context length does Llama 3.1 have?") == 1
    assert best(numbers, "What context length does Llama 2 have?") == 2
    # bm25s' default terms drop "3", "1" and "2": the three versions score the same.
    words = build(LexicalScheme(numbers=False, title=False))
    scores = words.scores(["What context length does Llama 3.1 have?"])[0]
    assert scores[0] == pytest.approx(scores[1]) == pytest.approx(scores[2])


def test_the_page_title_makes_a_chunk_findable_by_the_name_it_omits() -> None:
    titled = build(LexicalScheme(title=True))
    assert best(titled, "How many tokens was Gemma 2 trained on?") == 3


def test_scores_are_zero_without_a_shared_term_and_for_empty_questions() -> None:
    lexical = build(LexicalScheme())
    scores = lexical.scores(["zebra", "", "the of and"])
    assert scores.shape == (3, len(TEXTS))
    assert not scores.any()


def test_saved_index_scores_identically(tmp_path: Path) -> None:
    scheme = LexicalScheme()
    built = build(scheme)
    files = built.save(tmp_path / scheme.folder)
    assert files and not [p for p in files if p.suffix in (".pkl", ".pickle")]
    loaded = Lexical.load(tmp_path / scheme.folder, scheme)
    question = ["context length of Llama 3.1"]
    np.testing.assert_allclose(loaded.scores(question), built.scores(question))


def test_each_scheme_has_its_own_folder() -> None:
    folders = {LexicalScheme(n, t).folder for n in (True, False) for t in (True, False)}
    assert folders == {"bm25-numbers-title", "bm25-numbers", "bm25-words-title", "bm25-words"}
    assert LexicalScheme(metadata=True).folder == "bm25-numbers-title-meta"


def test_page_metadata_makes_a_chunk_findable_by_its_date_and_authors() -> None:
    scheme = LexicalScheme(metadata=True)
    meta = {"title": "Falcon 2", "published": "2024-05-13", "authors": "tii-team", "tags": "llm"}
    header = scheme.header(meta)
    assert "may 2024" in header and "tii-team" in header and "Falcon 2" in header
    lexical = Lexical.build(["It speaks many languages.", "Other text."], [header, "Otter"], scheme)
    scores = lexical.scores(["the spring 2024 model by tii-team"])[0]
    assert scores[0] > 0 and scores[1] == 0
    assert LexicalScheme().header(meta) == "Falcon 2"  # metadata off: the title alone
