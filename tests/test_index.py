from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
from langchain_core.documents import Document

from ragserve.config import Config, RetrievalConfig
from ragserve.index import Index, IndexError_, index_key
from ragserve.retrieval import Retriever

DOCS = Path(__file__).resolve().parent / "fixtures" / "docs"
pytestmark = pytest.mark.model


def dense(index: Index, vectors: np.ndarray, k: int) -> list:
    return Retriever(index, RetrievalConfig(hybrid=False)).search(vectors, [], k)


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
    index = Index.load_or_build(cfg, encoder)
    questions = ["How do I rotate the inference token?", "What is the mascot called?"]
    results = dense(index, encoder.embed(questions), 2)
    assert [len(hits) for hits in results] == [2, 2]
    assert results[0][0].document.metadata["source"] == "docs/tokens.md"
    assert "Quilla" in results[1][0].document.page_content
    assert results[0][0].score >= results[0][1].score  # cosine, best first


def test_saved_index_loads_identically_without_pickles(cfg: Config, encoder) -> None:
    built = Index.load_or_build(cfg, encoder)
    folder = Path(cfg.index.dir) / index_key(cfg)
    saved = sorted(p.name for p in folder.iterdir())
    assert saved == ["bm25-numbers-title-meta", "chunks.jsonl", "index.faiss", "manifest.json", "pages", "windows-3-2"]
    assert not [p for p in folder.rglob("*") if p.suffix in (".pkl", ".pickle")]
    loaded = Index.load(folder, index_key(cfg), encoder)
    query = encoder.embed(["workers and batch size"])
    assert [h.document for h in dense(loaded, query, 3)[0]] == [h.document for h in dense(built, query, 3)[0]]


def test_loaded_vectors_are_memory_mapped_and_score_like_a_copy(cfg: Config, encoder) -> None:
    Index.load_or_build(cfg, encoder)
    folder = Path(cfg.index.dir) / index_key(cfg)
    mapped = Index.load(folder, index_key(cfg), encoder, mmap=True)
    copied = Index.load(folder, index_key(cfg), encoder, mmap=False)
    maps = Path("/proc/self/maps").read_text()
    assert str(folder / "index.faiss") in maps  # shared page cache, not a private copy
    query = encoder.embed(["How do I rotate the inference token?"])
    assert [(h.document, h.score) for h in dense(mapped, query, 3)[0]] == [
        (h.document, h.score) for h in dense(copied, query, 3)[0]
    ]
    assert mapped.dense_score(query[0], 0) == pytest.approx(copied.dense_score(query[0], 0))


def test_published_index_loads_without_writing_anything(cfg: Config, encoder) -> None:
    Index.load_or_build(cfg, encoder)
    parent = Path(cfg.index.dir)
    for lock in parent.glob("*.lock"):
        lock.unlink()
    before = {p: p.stat().st_mtime_ns for p in parent.rglob("*")}
    assert len(Index.load_or_build(cfg, encoder)) > 0
    assert {p: p.stat().st_mtime_ns for p in parent.rglob("*")} == before  # no lock file, nothing rewritten


def test_second_load_or_build_reuses_the_folder(cfg: Config, encoder, monkeypatch) -> None:
    Index.load_or_build(cfg, encoder)
    monkeypatch.setattr(Index, "_build_and_save", classmethod(lambda *a: pytest.fail("rebuilt")))
    assert len(Index.load_or_build(cfg, encoder)) > 0


def test_corrupted_index_is_detected_and_rebuilt(cfg: Config, encoder) -> None:
    Index.load_or_build(cfg, encoder)
    folder = Path(cfg.index.dir) / index_key(cfg)
    chunks = folder / "chunks.jsonl"
    chunks.write_text(chunks.read_text().replace("Quilla", "Evil!"))
    with pytest.raises(IndexError_, match="sha256 mismatch"):
        Index.load(folder, index_key(cfg), encoder)
    with pytest.raises(IndexError_, match="another config"):
        Index.load(folder, "0" * 16, encoder)
    rebuilt = Index.load_or_build(cfg, encoder)
    assert any("Quilla" in rebuilt.document(i).page_content for i in range(len(rebuilt)))
    assert json.loads((folder / "manifest.json").read_text())["count"] == len(rebuilt)


def test_l2_metric_returns_distances_smallest_first(encoder) -> None:
    chunks = [Document(t, metadata={"source": "s"}) for t in ["cats sleep a lot", "the stock market fell"]]
    index = Index.build(chunks, encoder, metric="l2")
    hits = dense(index, encoder.embed(["do cats sleep?"]), 2)[0]
    assert hits[0].document.page_content == "cats sleep a lot" and hits[0].score < hits[1].score
    assert np.isclose(
        hits[0].score,
        np.sum((encoder.embed(["do cats sleep?"]) - encoder.embed([chunks[0].page_content])) ** 2),
        atol=1e-4,
    )


def test_hybrid_search_finds_exact_terms_and_keeps_dense_scores(cfg: Config, encoder) -> None:
    index = Index.load_or_build(cfg, encoder)
    question = "Quilla"
    vectors = encoder.embed([question])
    hybrid = Retriever(index, cfg.retrieval).search(vectors, [question], 3)[0]
    assert "Quilla" in hybrid[0].document.page_content
    scores = {h.document.page_content: h.score for h in dense(index, vectors, len(index))[0]}
    assert all(abs(h.score - scores[h.document.page_content]) < 1e-5 for h in hybrid)


def test_a_tampered_bm25_file_is_detected(cfg: Config, encoder) -> None:
    Index.load_or_build(cfg, encoder)
    folder = Path(cfg.index.dir) / index_key(cfg)
    vocab = folder / "bm25-numbers-title-meta" / "vocab.index.json"
    vocab.write_text(vocab.read_text() + " ")
    with pytest.raises(IndexError_, match="vocab.index.json is corrupted"):
        Index.load(folder, index_key(cfg), encoder)


def test_another_bm25_scheme_is_derived_from_the_saved_chunks_without_re_embedding(
    cfg: Config, encoder, monkeypatch
) -> None:
    Index.load_or_build(cfg, encoder)
    folder = Path(cfg.index.dir) / index_key(cfg)
    plain = dataclasses.replace(cfg.index, bm25_numbers=False, bm25_title=False, bm25_metadata=False)
    words = dataclasses.replace(cfg, index=plain)
    assert index_key(words) == index_key(cfg)  # same vectors, same folder
    monkeypatch.setattr(type(encoder), "embed", lambda *a: pytest.fail("re-embedded"))
    index = Index.load_or_build(words, encoder)
    assert index.lexical.scheme.folder == "bm25-words"
    manifest = json.loads((folder / "manifest.json").read_text())
    derived = {name.split("/")[0] for name in manifest["sha256"] if "/" in name}
    assert derived == {"bm25-numbers-title-meta", "bm25-words", "pages", "windows-3-2"}
    assert Index.load(folder, index_key(cfg), encoder).lexical.scheme.folder == "bm25-numbers-title-meta"


def test_hybrid_fusions_put_the_exact_term_chunk_first(cfg: Config, encoder) -> None:
    index = Index.load_or_build(cfg, encoder)
    question = "Quilla"
    for fusion in ("convex", "rrf"):
        retrieval = dataclasses.replace(cfg.retrieval, fusion=fusion)
        hits = Retriever(index, retrieval).search(encoder.embed([question]), [question], 3)[0]
        assert "Quilla" in hits[0].document.page_content, fusion


def test_sentence_windows_are_added_to_an_index_saved_without_them(cfg: Config, encoder, monkeypatch) -> None:
    no_windows = dataclasses.replace(cfg, retrieval=dataclasses.replace(cfg.retrieval, window_weight=0.0))
    assert Index.load_or_build(no_windows, encoder).windows is None
    folder = Path(cfg.index.dir) / index_key(cfg)
    assert not (folder / "windows-3-2").exists()
    vectors_before = (folder / "index.faiss").read_bytes()
    embedded: list[str] = []
    embed = type(encoder).embed
    monkeypatch.setattr(type(encoder), "embed", lambda self, texts: embedded.extend(texts) or embed(self, texts))
    index = Index.load_or_build(cfg, encoder)
    assert index.windows is not None and set(index.windows.owner.tolist()) == set(range(len(index)))
    assert embedded and max(len(text) for text in embedded) < cfg.corpus.chunk_size  # windows, not chunks
    assert (folder / "index.faiss").read_bytes() == vectors_before
    manifest = json.loads((folder / "manifest.json").read_text())
    assert "windows-3-2/vectors.npy" in manifest["sha256"] and manifest["derived_s"]["windows-3-2"] >= 0
