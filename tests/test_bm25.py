from __future__ import annotations

from pathlib import Path

import bm25s
import numpy as np
import pytest
import Stemmer

from ragserve.index.bm25 import BM25, BM25Scheme, identifier_terms

TEXTS = [
    "Llama 3 has a context length of 8K tokens.",
    "Llama 3.1 has a context length of 128K tokens.",
    "Llama 2 has a context length of 4K tokens.",
    "It was trained on 15 trillion tokens.",
]
TITLES = ["Llama 3", "Llama 3.1", "Llama 2", "Gemma 2"]


def best(lexical: BM25, question: str) -> int:
    return int(np.argmax(lexical.scores([question])[0]))


def build(scheme: BM25Scheme) -> BM25:
    return BM25.build(TEXTS, [scheme.header({"title": title}) for title in TITLES], scheme)


def test_keeping_numbers_tells_model_versions_apart() -> None:
    numbers = build(BM25Scheme(numbers=True, title=False))
    assert best(numbers, "What context length does Llama 3.1 have?") == 1
    assert best(numbers, "What context length does Llama 2 have?") == 2
    # bm25s' default terms drop "3", "1" and "2": the three versions score the same.
    words = build(BM25Scheme(numbers=False, title=False))
    scores = words.scores(["What context length does Llama 3.1 have?"])[0]
    assert scores[0] == pytest.approx(scores[1]) == pytest.approx(scores[2])


def test_the_page_title_makes_a_chunk_findable_by_the_name_it_omits() -> None:
    titled = build(BM25Scheme(title=True))
    assert best(titled, "How many tokens was Gemma 2 trained on?") == 3


def test_scores_are_zero_without_a_shared_term_and_for_empty_questions() -> None:
    lexical = build(BM25Scheme())
    scores = lexical.scores(["zebra", "", "the of and"])
    assert scores.shape == (3, len(TEXTS))
    assert not scores.any()


def test_saved_index_scores_identically(tmp_path: Path) -> None:
    scheme = BM25Scheme()
    built = build(scheme)
    files = built.save(tmp_path / scheme.folder)
    assert files and not [p for p in files if p.suffix in (".pkl", ".pickle")]
    loaded = BM25.load(tmp_path / scheme.folder, scheme)
    question = ["context length of Llama 3.1", "json.dumps -X skip_keys JSONDecoder"]
    np.testing.assert_allclose(loaded.scores(question), built.scores(question))


def test_each_scheme_has_its_own_folder() -> None:
    folders = {BM25Scheme(n, t, False, False).folder for n in (True, False) for t in (True, False)}
    assert folders == {"bm25-numbers-title", "bm25-numbers", "bm25-words-title", "bm25-words"}
    assert BM25Scheme(metadata=True, identifiers=False).folder == "bm25-numbers-title-meta"
    # Identifier terms are new terms: an index built without them is never read with them.
    assert BM25Scheme(metadata=False).folder == "bm25-numbers-title-idents"
    assert BM25Scheme().folder == "bm25-numbers-title-meta-idents"  # the index section's defaults
    assert BM25Scheme(numbers=False, title=False, metadata=True).folder == "bm25-words-meta-idents"


def test_page_metadata_makes_a_chunk_findable_by_its_date_and_authors() -> None:
    scheme = BM25Scheme(metadata=True)
    meta = {"title": "Falcon 2", "published": "2024-05-13", "authors": "tii-team", "tags": "llm"}
    header = scheme.header(meta)
    assert "may 2024" in header and "tii-team" in header and "Falcon 2" in header
    lexical = BM25.build(["It speaks many languages.", "Other text."], [header, "Otter"], scheme)
    scores = lexical.scores(["the spring 2024 model by tii-team"])[0]
    assert scores[0] > 0 and scores[1] == 0
    assert BM25Scheme(metadata=False).header(meta) == "Falcon 2"  # metadata off: the title alone


@pytest.mark.parametrize(
    ("text", "terms"),
    [
        ("json.dumps", ["json.dumps"]),  # its parts are words already
        ("Call json.dumps(obj).", ["json.dumps"]),  # the sentence's period is no part
        ("os.path.join and os.PathLike", ["os.path.join", "os.pathlike", "path", "like"]),
        ("python -X dev -m json.tool", ["-X", "-m", "json.tool"]),  # options keep their case
        ("(-x) or --no-site, `--check-hash-based-pycs`", ["-x", "--no-site", "--check-hash-based-pycs"]),
        ("skip_keys", ["skip", "keys"]),  # the whole word is a word term already
        ("__init_subclass__ and _thread", ["init", "subclass", "thread"]),
        ("JSONDecoder and ThreadPoolExecutor", []),  # a CamelCase word alone: product names split into noise
        ("SageMaker, OpenAI, MoE and vLLM", []),
        ("json.JSONDecoder.raw_decode", ["json.jsondecoder.raw_decode", "json", "decoder", "raw", "decode"]),
        ("is_a", []),  # parts are words: "is" and "a" are stopwords
    ],
)
def test_identifier_terms(text: str, terms: list[str]) -> None:
    assert identifier_terms(text) == terms


@pytest.mark.parametrize(
    "text",
    [
        "Llama 3.1 and Python 3.11.4 and v3.1",  # numbers
        "4-bit weights, non-blocking calls, a well-known pre-trained model",  # hyphenated words
        "Options, e.g. this one, i.e. that one, made in the U.S. today.",  # abbreviations
        "It ends here. Next sentence.",  # sentence-ending periods
        "Python, JSON, json, GPUs, LLMs and APIs",  # plain words, plural acronyms
        "____ 1_000 -1 -- em dash",
    ],
)
def test_words_numbers_and_prose_are_no_identifiers(text: str) -> None:
    assert identifier_terms(text) == []


def test_identifier_parts_are_stemmed_like_words_and_names_are_not() -> None:
    stem = Stemmer.Stemmer("english").stemWords
    assert identifier_terms("skip_keys json.JSONDecoder", stem) == ["skip", "key", "json.jsondecoder", "json", "decod"]


def test_a_named_identifier_ranks_the_chunk_that_names_it_first() -> None:
    texts = [
        "json.dumps(obj) serializes obj to a JSON formatted str.",
        "The json module dumps data as text; pickle dumps objects, json dumps strings.",
        "The -X option sets implementation-specific options, such as -X dev.",
        "Let x be a variable: x = x + 1 increments x.",
        "The json.JSONDecoder class reads a document.",
        "Set skip_keys to pass over the dictionary entries that are not strings.",
    ]
    questions = ["How do I call json.dumps?", "What does -X do?", "the JSON decoder", "skip keys"]
    lexical = BM25.build(texts, [""] * len(texts), BM25Scheme(title=False))
    dumps, x_option, decoder, skip = lexical.scores(questions)
    assert dumps[0] > dumps[1] > 0
    assert x_option[2] > x_option[3]
    assert np.argmax(decoder) == 4 and np.argmax(skip) == 5
    # Today's words alone: "json" and "dumps" said apart win, "x" is the variable's word, and
    # "JSONDecoder" is one word that "JSON decoder" never matches.
    words = BM25.build(texts, [""] * len(texts), BM25Scheme(title=False, identifiers=False))
    dumps, x_option, decoder, skip = words.scores(questions)
    assert dumps[1] > dumps[0] and x_option[3] > x_option[2] and np.argmax(decoder) != 4 and skip[5] == 0


def test_identifiers_off_gives_exactly_the_old_terms() -> None:
    texts = [*TEXTS, "Use json.dumps, -X dev and skip_keys with a JSONDecoder.", ""]
    stemmer = Stemmer.Stemmer("english")
    for numbers in (True, False):
        lexical = BM25.build(texts, [""] * len(texts), BM25Scheme(numbers=numbers, identifiers=False))
        old = bm25s.tokenize(
            texts,
            token_pattern=lexical.scheme.token_pattern,
            stopwords="en",
            stemmer=stemmer,
            return_ids=False,
            show_progress=False,
        )
        assert lexical.terms(texts) == old
        # Identifiers on: the same words first, then the identifiers' terms.
        terms = BM25(lexical.retriever, BM25Scheme(numbers=numbers)).terms(texts)
        assert [t[: len(o)] for t, o in zip(terms, old, strict=True)] == old
        assert terms[-2][len(old[-2]) :] == identifier_terms(texts[-2], stemmer.stemWords)
