"""The read side (store.py) over versions the write side (builder.py) made: loading, checks, memory maps, search."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document

from ragserve.config import Config, IndexConfig, RetrievalConfig
from ragserve.index.bm25 import BM25
from ragserve.index.builder import build_in_memory, refresh
from ragserve.index.line import IndexLine
from ragserve.index.store import IndexStoreError, IndexVersion, load_current
from ragserve.retrieval.retriever import Retriever

DOCS = Path(__file__).resolve().parent / "fixtures" / "docs"
pytestmark = pytest.mark.model


def dense(index: IndexVersion, vectors: np.ndarray, k: int) -> list:
    return Retriever(index, RetrievalConfig(hybrid=False)).search(vectors, [], k)


def build(cfg: Config, encoder) -> IndexVersion:
    """`make index` for cfg, then what a worker loads."""
    refresh(cfg, lambda: encoder)
    return load_current(cfg, encoder)


def live_folder(cfg: Config) -> Path:
    line = IndexLine.of(cfg)
    return line.folder(line.current())


@pytest.fixture
def cfg(tmp_path: Path, model_dir: Path) -> Config:
    return Config.from_mapping(
        {
            "corpus": {"source": str(DOCS), "chunk_size": 200, "chunk_overlap": 20},
            "embedding": {"model_path": str(model_dir)},
            "index": {"dir": str(tmp_path / "index")},
        },
        tmp_path,
    )


def test_search_finds_the_answering_chunk_for_each_query_in_one_call(cfg: Config, encoder) -> None:
    index = build(cfg, encoder)
    questions = ["How do I rotate the inference token?", "What is the mascot called?"]
    results = dense(index, encoder.embed(questions), 2)
    assert [len(hits) for hits in results] == [2, 2]
    assert results[0][0].document.metadata["source"] == "docs/tokens.md"
    assert "Quilla" in results[1][0].document.page_content
    assert results[0][0].score >= results[0][1].score  # cosine, best first


def test_a_saved_version_loads_like_the_index_built_in_memory_without_pickles(cfg: Config, encoder) -> None:
    loaded = build(cfg, encoder)
    folder = live_folder(cfg)
    saved = sorted(p.name for p in folder.iterdir())
    assert saved == [
        "bm25-numbers-title-meta-idents", "chunks.jsonl", "index.faiss", "manifest.json",
        "pages", "sources.jsonl", "windows-3-3",
    ]  # fmt: skip
    assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle")]
    built, _ = build_in_memory(loaded.documents(), encoder, cfg)
    query = encoder.embed(["workers and batch size"])
    assert [h.document for h in dense(loaded, query, 3)[0]] == [h.document for h in dense(built, query, 3)[0]]


def test_loaded_vectors_are_memory_mapped_and_score_like_a_copy(cfg: Config, encoder) -> None:
    build(cfg, encoder)
    folder = live_folder(cfg)
    mapped = IndexVersion.load(folder, cfg, encoder, mmap=True)
    copied = IndexVersion.load(folder, cfg, encoder, mmap=False)
    maps = Path("/proc/self/maps").read_text()
    assert str(folder / "index.faiss") in maps  # shared page cache, not a private copy
    query = encoder.embed(["How do I rotate the inference token?"])
    assert [(h.document, h.score) for h in dense(mapped, query, 3)[0]] == [
        (h.document, h.score) for h in dense(copied, query, 3)[0]
    ]
    assert mapped.dense_score(query[0], 0) == pytest.approx(copied.dense_score(query[0], 0))


def test_a_worker_load_writes_nothing_and_takes_no_lock(cfg: Config, encoder) -> None:
    build(cfg, encoder)
    root = Path(cfg.index.dir)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*")}
    assert len(load_current(cfg, encoder)) > 0
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*")} == before  # no lock file, nothing rewritten


def test_a_worker_load_builds_no_bm25_and_gets_the_page_level_the_builder_saved(
    cfg: Config, encoder, monkeypatch
) -> None:
    build(cfg, encoder)
    built, _ = build_in_memory(load_current(cfg, encoder).documents(), encoder, cfg)
    monkeypatch.setattr(BM25, "build", lambda *a, **k: pytest.fail("a worker built a BM25 index"))
    loaded = load_current(cfg, encoder)
    pages = live_folder(cfg) / "pages"
    assert sorted(p.name for p in pages.iterdir()) == ["bm25-numbers-idents", "owner.npy", "vectors.npy"]
    assert loaded.pages is not None and loaded.pages.records == built.pages.records
    questions = ["What is the mascot called?", "How do I rotate the inference token?"]
    vectors = encoder.embed(questions)
    saved, fresh = Retriever(loaded, cfg.retrieval), Retriever(built, cfg.retrieval)
    assert np.array_equal(loaded.pages.bm25.scores(questions), built.pages.bm25.scores(questions))
    # the page vectors were embedded in other batches: equal up to float rounding
    assert np.allclose(saved.page_scores(vectors, questions), fresh.page_scores(vectors, questions), atol=1e-5)


def test_a_version_without_its_page_bm25_is_not_loaded_and_names_the_command(cfg: Config, encoder) -> None:
    build(cfg, encoder)
    folder = live_folder(cfg)
    shutil.rmtree(folder / "pages" / "bm25-numbers-idents")  # as a version written before format 5 had it
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["sha256"] = {name: d for name, d in manifest["sha256"].items() if "/bm25-" not in name}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(IndexStoreError, match="no page vectors or page BM25.*make refresh"):
        load_current(cfg, encoder)


def test_without_a_built_index_a_worker_says_what_to_run(cfg: Config, encoder) -> None:
    with pytest.raises(IndexStoreError, match="make index"):
        load_current(cfg, encoder)


def test_a_corrupted_or_foreign_version_is_never_loaded(cfg: Config, encoder) -> None:
    build(cfg, encoder)
    folder = live_folder(cfg)
    chunks = folder / "chunks.jsonl"
    chunks.write_text(chunks.read_text().replace("Quilla", "Evil!"))
    with pytest.raises(IndexStoreError, match="sha256 mismatch"):
        IndexVersion.load(folder, cfg, encoder)
    other = dataclasses.replace(cfg, embedding=dataclasses.replace(cfg.embedding, max_seq_length=128))
    with pytest.raises(IndexStoreError, match="another config .*max_seq_length"):
        IndexVersion.load(folder, other, encoder)


def test_l2_metric_returns_distances_smallest_first(encoder) -> None:
    chunks = [Document(t, metadata={"source": "s"}) for t in ["cats sleep a lot", "the stock market fell"]]
    l2 = Config(index=IndexConfig(metric="l2"))
    index, _ = build_in_memory(chunks, encoder, l2)
    hits = dense(index, encoder.embed(["do cats sleep?"]), 2)[0]
    assert hits[0].document.page_content == "cats sleep a lot" and hits[0].score < hits[1].score
    assert np.isclose(
        hits[0].score,
        np.sum((encoder.embed(["do cats sleep?"]) - encoder.embed([chunks[0].page_content])) ** 2),
        atol=1e-4,
    )


def test_hybrid_search_finds_exact_terms_and_keeps_dense_scores(cfg: Config, encoder) -> None:
    index = build(cfg, encoder)
    question = "Quilla"
    vectors = encoder.embed([question])
    hybrid = Retriever(index, cfg.retrieval).search(vectors, [question], 3)[0]
    assert "Quilla" in hybrid[0].document.page_content
    scores = {h.document.page_content: h.score for h in dense(index, vectors, len(index))[0]}
    assert all(abs(h.score - scores[h.document.page_content]) < 1e-5 for h in hybrid)


def test_a_tampered_bm25_file_is_detected(cfg: Config, encoder) -> None:
    build(cfg, encoder)
    vocab = live_folder(cfg) / "bm25-numbers-title-meta-idents" / "vocab.index.json"
    vocab.write_text(vocab.read_text() + " ")
    with pytest.raises(IndexStoreError, match="vocab.index.json is corrupted"):
        load_current(cfg, encoder)


def test_another_bm25_scheme_is_its_own_version_built_from_the_embedding_cache(cfg: Config, encoder) -> None:
    build(cfg, encoder)
    plain = dataclasses.replace(
        cfg.index, bm25_numbers=False, bm25_title=False, bm25_metadata=False, bm25_identifiers=False
    )
    words = dataclasses.replace(cfg, index=plain)
    report = refresh(words, lambda: pytest.fail("loaded the encoder: something was re-embedded"))
    assert report.written and report.embedded == {"chunks": 0, "page records": 0, "sentence windows": 0}
    assert load_current(words, encoder).bm25.scheme.folder == "bm25-words"
    # its own line, untouched
    assert load_current(cfg, encoder).bm25.scheme.folder == "bm25-numbers-title-meta-idents"


def test_hybrid_fusions_put_the_exact_term_chunk_first(cfg: Config, encoder) -> None:
    index = build(cfg, encoder)
    question = "Quilla"
    for fusion in ("convex", "rrf"):
        retrieval = dataclasses.replace(cfg.retrieval, fusion=fusion)
        hits = Retriever(index, retrieval).search(encoder.embed([question]), [question], 3)[0]
        assert "Quilla" in hits[0].document.page_content, fusion


def test_turning_sentence_windows_on_embeds_the_windows_and_no_chunk(cfg: Config, encoder, monkeypatch) -> None:
    no_windows = dataclasses.replace(cfg, retrieval=dataclasses.replace(cfg.retrieval, window_weight=0.0))
    assert build(no_windows, encoder).windows is None
    embedded: list[str] = []
    embed = type(encoder).embed
    monkeypatch.setattr(type(encoder), "embed", lambda self, texts: embedded.extend(texts) or embed(self, texts))
    index = build(cfg, encoder)
    assert index.windows is not None and set(index.windows.owner.tolist()) == set(range(len(index)))
    chunk_texts = {doc.page_content for doc in index.documents()}
    assert embedded and not chunk_texts & set(embedded)  # windows (and nothing else) reached the encoder
    manifest = json.loads((live_folder(cfg) / "manifest.json").read_text())
    assert "windows-3-3/vectors.npy" in manifest["sha256"] and manifest["changes"]["embedded"]["chunks"] == 0


def test_a_version_past_window_max_chunks_is_built_and_searched_without_windows(cfg: Config, encoder) -> None:
    small = dataclasses.replace(cfg, index=dataclasses.replace(cfg.index, window_max_chunks=1))
    index = build(small, encoder)
    assert len(index) > 1 and index.windows is None
    assert not [
        name for name in json.loads((live_folder(small) / "manifest.json").read_text())["sha256"] if "windows" in name
    ]
    question = "Quilla"
    hits = Retriever(index, small.retrieval).search(encoder.embed([question]), [question], 3)[0]
    assert "Quilla" in hits[0].document.page_content
    assert build(cfg, encoder).windows is not None  # the default limit: this corpus gets its windows
