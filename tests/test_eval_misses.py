"""benchmarks/benchlib/misses.py: each miss of the retrieval eval gets its cause, on a tiny index built here (tiny
random MPNet, no download) and on hand-made inputs; benchlib/retrieval_eval.py's hit test ignores case."""

from __future__ import annotations

import importlib
from types import ModuleType

import pytest
from langchain_core.documents import Document

from ragserve.config import CompileConfig, Config, EmbeddingConfig, RetrievalConfig, override
from ragserve.embedding.encoder import Encoder
from ragserve.index.builder import build_in_memory
from ragserve.retrieval.retriever import Retriever
from ragserve_ops.testing import ROOT, build_tiny_mpnet

JSON_PAGE, PICKLE_PAGE = "http://127.0.0.1:8767/library/json.html", "http://127.0.0.1:8767/library/pickle.html"
JSON_CHUNKS = [
    "# json\nThe json module encodes Python objects as JSON text.",
    "## Decoding\nUse loads to decode a document; it returns",  # the evidence "it returns a Python object" is
    "a Python object built from the JSON text.",  # cut by this chunk boundary
]
PICKLE_CHUNKS = ["# pickle\nThe pickle module serialises objects into a byte stream for storage."]
PAGES = {JSON_PAGE: "\n".join(JSON_CHUNKS), PICKLE_PAGE: PICKLE_CHUNKS[0]}  # the page texts (sources.jsonl)


@pytest.fixture(scope="module")
def benchmarks() -> tuple[ModuleType, ModuleType]:
    """benchlib.misses and benchlib.retrieval_eval, imported as the scripts import them (benchmarks/ on the path)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(ROOT / "benchmarks"))
        return importlib.import_module("benchlib.misses"), importlib.import_module("benchlib.retrieval_eval")


@pytest.fixture(scope="module")
def embedding(tmp_path_factory: pytest.TempPathFactory) -> EmbeddingConfig:
    return EmbeddingConfig(model_path=str(build_tiny_mpnet(tmp_path_factory.mktemp("tiny-mpnet"))), batch_size=4)


@pytest.fixture(scope="module")
def encoder(embedding: EmbeddingConfig) -> Encoder:
    return Encoder(embedding, CompileConfig(enabled=False))


@pytest.fixture(scope="module")
def explainer(benchmarks, embedding: EmbeddingConfig, encoder: Encoder):
    """Misses over a 4-chunk index whose fused ranking is BM25's alone (dense weight 0, no page level): a
    question's words decide its top page and chunk, whatever the random model's vectors."""
    misses, _ = benchmarks
    chunks = [
        Document(text, metadata={"source": url, "title": f"{name} module", "chunk": i})
        for url, name, texts in ((JSON_PAGE, "json", JSON_CHUNKS), (PICKLE_PAGE, "pickle", PICKLE_CHUNKS))
        for i, text in enumerate(texts)
    ]
    retrieval = RetrievalConfig(dense_weight=0.0, page_weight=0.0, window_weight=0.0)
    index, _ = build_in_memory(chunks, encoder, Config(embedding=embedding, retrieval=retrieval))
    return misses.Misses(index, Retriever(index, retrieval), PAGES), encoder


def explain(explainer, question: str, source: str, evidence: str) -> dict:
    misses, encoder = explainer
    row = {"id": "q", "question": question, "source": source, "evidence": evidence}
    return misses.explain(row, encoder.embed([question])[0])


def test_evidence_in_no_chunk_nor_page_text_is_extraction(explainer) -> None:
    row = explain(explainer, "Which encodings exist?", "library/json.html", "a table that lists every encoding")
    assert row["cause"] == "extraction" and row["evidence_in_page"] is False
    assert not row["evidence_in_corpus"] and row["dense_rank"] is row["bm25_rank"] is row["fused_rank"] is None


def test_evidence_cut_by_a_chunk_boundary_is_split(explainer) -> None:
    row = explain(explainer, "What does loads give back?", "library/json.html", "It  returns a PYTHON object")
    assert row["cause"] == "split" and row["evidence_in_page"] is True and not row["evidence_in_corpus"]


def test_a_page_outside_the_corpus_is_page_missing(explainer) -> None:
    row = explain(explainer, "How do I read a CSV file?", "library/csv.html", "csv readers")
    assert row["cause"] == "page missing" and row["evidence_in_page"] is None


def test_evidence_on_a_page_that_ranks_below_another_is_wrong_page(explainer) -> None:
    row = explain(explainer, "pickle byte stream storage", "library/json.html", "encodes Python objects as JSON")
    assert row["cause"] == "wrong page" and row["evidence_in_corpus"]
    assert row["top_page"] == PICKLE_PAGE and row["page_rank"] == 2
    assert row["bm25_rank"] is None  # no word of the question in the evidence chunk
    assert 1 <= row["dense_rank"] <= 4 and 2 <= row["fused_rank"] <= 4


def test_evidence_in_another_chunk_of_the_top_page_is_wrong_chunk(explainer) -> None:
    row = explain(explainer, "decoding loads document", "library/json.html", "encodes Python objects as JSON")
    assert row["cause"] == "wrong chunk" and row["page_rank"] == 1 and row["top_page"] == JSON_PAGE
    assert row["fused_rank"] >= 2


@pytest.mark.parametrize(
    ("in_chunks", "in_page", "page_rank", "expected"),
    [
        (False, False, 1, "extraction"),
        (False, None, None, "page missing"),
        (False, True, 3, "split"),
        (True, True, None, "wrong page"),  # the page is not even in the deep fused list
        (True, True, 2, "wrong page"),
        (True, None, None, "wrong page"),  # the evidence is on another page only
        (True, True, 1, "wrong chunk"),
    ],
)
def test_cause_of_hand_made_cases(benchmarks, in_chunks: bool, in_page: bool | None, page_rank, expected) -> None:
    assert benchmarks[0].cause(in_chunks, in_page, page_rank) == expected


@pytest.mark.parametrize(
    ("url", "source", "expected"),
    [
        ("http://127.0.0.1:8767/library/json.html", "library/json.html", True),
        ("http://127.0.0.1:8767/library/json.html", "json.html", True),
        ("http://127.0.0.1:8767/library/simplejson.html", "json.html", False),
        ("http://127.0.0.1:8767/tutorial", "tutorial/index.html", True),
        ("http://127.0.0.1:8765/blog/llama3", "llama3", True),
        ("http://127.0.0.1:8765/blog/llama31", "llama3", False),
        ("html/library/json.html", "library/json.html", True),  # a local folder's path
    ],
)
def test_same_page_matches_doc_paths_and_blog_slugs(benchmarks, url: str, source: str, expected: bool) -> None:
    assert benchmarks[0].same_page(url, source) is expected


def test_causes_are_counted_per_variant_in_a_table(benchmarks) -> None:
    misses = benchmarks[0]
    counts = misses.count_causes([{"cause": "split"}, {"cause": "wrong page"}, {"cause": "split"}])
    assert counts == {"extraction": 0, "page missing": 0, "split": 2, "wrong page": 1, "wrong chunk": 0}
    table = misses.causes_markdown({"default": counts})
    assert "| variant | misses | extraction | page missing | split | wrong page | wrong chunk |" in table
    assert "| default | 3 | 0 | 0 | 2 | 1 | 0 |" in table


def test_the_hit_test_folds_whitespace_and_case(benchmarks) -> None:
    from ragserve.retrieval.retriever import Hit

    hits = [Hit(Document("Nothing here."), 0.9), Hit(Document("The  JSON\nmodule encodes"), 0.8)]
    question = {"id": "q", "answerable": True, "evidence": "json module Encodes"}
    assert benchmarks[1].score_question(hits, question)["rank"] == 2


def test_a_built_version_gives_its_page_texts_and_explains_a_split(benchmarks, embedding, encoder, tmp_path) -> None:
    """Through a real build (refresh: sources.jsonl, chunks.jsonl, sentence windows) of a local folder: the two
    paragraphs of a page become two chunks, so evidence across them is a split."""
    from ragserve.index.builder import refresh
    from ragserve.index.store import load_current

    misses = benchmarks[0]
    first = "Codecs turn text into bytes and back again. " * 3 + "The default codec is UTF-8"
    second = "on every platform since 3.7. " + "Errors handlers decide what happens to bad input. " * 2
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "codecs.md").write_text(f"# Codecs\n\n{first}\n\n{second}\n")
    handler = {"corpus.source": str(tmp_path / "docs"), "corpus.chunk_size": 200, "corpus.chunk_overlap": 0}
    handler |= {"embedding.model_path": embedding.model_path, "index.dir": str(tmp_path / "index")}
    cfg = Config.from_mapping(override({}, handler), tmp_path)
    refresh(cfg, lambda: encoder)
    index = load_current(cfg, encoder)
    pages = misses.page_texts(cfg, index)
    assert list(pages) == ["docs/codecs.md"] and "UTF-8\n\non every platform" in pages["docs/codecs.md"]
    explainer = misses.Misses(index, Retriever(index, cfg.retrieval), pages)
    question = {"id": "q", "question": "Which codec is the default?", "source": "codecs.md"}
    vector = encoder.embed([question["question"]])[0]
    row = explainer.explain({**question, "evidence": "default codec is UTF-8 on every platform"}, vector)
    assert len(index) >= 2 and row["cause"] == "split" and row["evidence_in_page"] is True
    row = explainer.explain({**question, "evidence": "The default codec is utf-8"}, vector)
    assert row["evidence_in_corpus"] and row["page_rank"] == 1 and row["cause"] == "wrong chunk"
