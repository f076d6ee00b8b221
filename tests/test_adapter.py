"""The query adapter (embedding/adapter.py), its use in retrieval (retrieval.query_adapter) and `make adapt`.

Training runs on synthetic pairs (queries a fixed rotation of their chunks, plus noise); the pipeline and the
script run on a tiny index of tests/fixtures/docs embedded by the tiny random MPNet: nothing is downloaded."""

from __future__ import annotations

import dataclasses
import runpy
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from ragserve.config import CompileConfig, Config, ConfigError
from ragserve.embedding.adapter import AdapterError, QueryAdapter, TrainSettings, corpus_pairs, train_adapter
from ragserve.embedding.encoder import Encoder
from ragserve.index.builder import refresh
from ragserve.index.line import IndexLine, line_key
from ragserve.index.store import IndexVersion, load_current
from ragserve.retrieval.pipeline import RAGPipeline
from ragserve.retrieval.queries import Query
from ragserve.retrieval.retriever import Retriever
from ragserve_ops.testing import FIXTURES, ROOT, build_tiny_mpnet

QUESTIONS = ["How many workers load the model?", "What is the batch size?", "Which tokens expire?"]


def rotated_pairs(count: int, dim: int, angle: float, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """(queries, chunks): unit chunks, and queries that are the chunks turned by `angle` in every plane of a
    fixed random basis, plus Gaussian noise, renormalised."""
    rng = np.random.default_rng(0)
    chunks = rng.standard_normal((count, dim))
    chunks /= np.linalg.norm(chunks, axis=1, keepdims=True)
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    turn = np.eye(dim)
    for i in range(0, dim - 1, 2):
        turn[i : i + 2, i : i + 2] = [[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]]
    queries = chunks @ (basis @ turn @ basis.T).T + noise * rng.standard_normal((count, dim))
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    return queries.astype(np.float32), chunks.astype(np.float32)


def unit_rows(count: int, dim: int, seed: int = 1) -> np.ndarray:
    rows = np.random.default_rng(seed).standard_normal((count, dim)).astype(np.float32)
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def test_training_on_rotated_pairs_lifts_heldout_recall_far_above_the_identity_and_is_deterministic() -> None:
    queries, chunks = rotated_pairs(1000, 32, angle=1.0, noise=0.1)
    settings = TrainSettings(lr=5e-3)
    adapter, metrics = train_adapter(queries, chunks, settings)
    assert metrics.heldout_queries == 100 and metrics.pairs == 900 and metrics.chunks == 1000
    assert metrics.before["recall@1"] < 0.4
    assert metrics.after["recall@1"] > 0.9 and metrics.after["recall@10"] >= metrics.before["recall@10"]
    again, _ = train_adapter(queries, chunks, settings)
    assert again.identity == adapter.identity  # seeded: the same pairs give the same weights


def test_a_query_repeated_over_several_chunks_is_one_query_and_none_of_its_chunks_is_its_negative() -> None:
    queries, chunks = rotated_pairs(200, 16, angle=0.3, noise=0.05)
    title = queries[:1].repeat(3, axis=0)  # one "page title" paired with three chunks
    _, metrics = train_adapter(np.vstack([queries, title]), np.vstack([chunks, unit_rows(3, 16)]))
    assert metrics.heldout_queries == 20 and metrics.chunks == 203  # 10% of the 200 distinct queries
    assert metrics.pairs in (203 - 20, 203 - 23)  # all of a held-out query's pairs leave training together


@pytest.mark.parametrize("hidden", [0, 8])
def test_the_initial_adapter_leaves_unit_vectors_unchanged(hidden: int) -> None:
    vectors = unit_rows(5, 32)
    adapted = QueryAdapter.initial(32, hidden).apply(vectors)
    assert adapted.dtype == np.float32 and adapted.shape == (5, 32)
    np.testing.assert_allclose(adapted, vectors, atol=1e-6)


@pytest.mark.parametrize("suffix", [".safetensors", ".npz"])
def test_save_load_round_trip_keeps_weights_metadata_and_identity(tmp_path: Path, suffix: str) -> None:
    adapter = QueryAdapter.initial(16, hidden=4)
    adapter.weights["weight"] += 0.1 * unit_rows(16, 16)
    adapter.metadata["line"] = "0123456789abcdef"
    loaded = QueryAdapter.load(adapter.save(tmp_path / f"a{suffix}"))
    assert loaded.identity == adapter.identity and len(adapter.identity) == 16
    assert set(loaded.weights) == set(adapter.weights)
    for name, value in adapter.weights.items():
        np.testing.assert_array_equal(loaded.weights[name], value)
    assert loaded.metadata["line"] == "0123456789abcdef" and loaded.metadata["identity"] == adapter.identity
    np.testing.assert_array_equal(loaded.apply(unit_rows(3, 16)), adapter.apply(unit_rows(3, 16)))
    assert QueryAdapter.initial(16).identity != adapter.identity


def test_unknown_formats_and_missing_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AdapterError, match="ends in .safetensors or .npz"):
        QueryAdapter.initial(4).save(tmp_path / "a.pt")
    with pytest.raises(AdapterError, match="retrieval.query_adapter: cannot read"):
        QueryAdapter.load(tmp_path / "missing.safetensors")
    with pytest.raises(ConfigError, match="retrieval.query_adapter must be a .safetensors or .npz"):
        Config.from_mapping({"retrieval": {"query_adapter": "adapter.pkl"}}, tmp_path)
    cfg = Config.from_mapping({"retrieval": {"query_adapter": "index/adapters/a.safetensors"}}, tmp_path)
    assert cfg.retrieval.query_adapter == str(tmp_path / "index" / "adapters" / "a.safetensors")


def test_corpus_pairs_take_heading_paths_else_titles_and_each_page_lead() -> None:
    chunks = [
        {"text": "Guide > Install > pip\nRun pip install.", "metadata": {"source": "a.md", "title": "Guide"}},
        {"text": "Guide > Install > pip\nThen import it.", "metadata": {"source": "a.md", "title": "Guide"}},
        {"text": "Plain text without a header.", "metadata": {"source": "b.md", "title": "Notes"}},
        {"text": "More plain text.", "metadata": {"source": "b.md", "title": "Notes"}},
        {"text": "No title at all.", "metadata": {"source": "c.md"}},
    ]
    queries, texts = corpus_pairs(chunks)
    assert list(zip(queries, texts, strict=True)) == [
        ("Guide > Install > pip", chunks[0]["text"]),
        ("Guide", chunks[0]["text"]),  # the page's lead, under its title
        ("Guide > Install > pip", chunks[1]["text"]),
        ("Notes", chunks[2]["text"]),  # no heading path: the title (the lead pair is the same pair)
        ("Notes", chunks[3]["text"]),
    ]


@pytest.fixture(scope="module")
def tiny_index(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A published index of tests/fixtures/docs (sections with heading-path lines) by the tiny MPNet; its yaml."""
    folder = tmp_path_factory.mktemp("adapt")
    handler = {
        "corpus": {"source": str(FIXTURES / "docs"), "chunk_size": 200, "chunk_overlap": 20},
        "embedding": {"model_path": str(build_tiny_mpnet(folder / "tiny-mpnet")), "batch_size": 8, "backend": "torch"},
        "compile": {"enabled": False},
        "index": {"dir": str(folder / "index"), "follow_s": 0},
    }
    handler["corpus"] |= {"split": "sections", "chunk_header": True}
    (folder / "rag.yaml").write_text(yaml.safe_dump({"handler": handler}))
    cfg = Config.from_mapping(handler, folder)
    refresh(cfg, lambda: Encoder(cfg.embedding, CompileConfig(enabled=False)))
    return folder, handler


@pytest.fixture(scope="module")
def pipeline_parts(tiny_index: tuple[Path, dict]) -> tuple[Config, Encoder, IndexVersion]:
    folder, handler = tiny_index
    cfg = Config.from_mapping(handler, folder)
    encoder = Encoder(cfg.embedding, CompileConfig(enabled=False))
    return cfg, encoder, load_current(cfg, encoder)


def test_adapt_script_trains_on_the_live_version_and_writes_an_adapter_named_by_line_and_identity(
    tiny_index: tuple[Path, dict], monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    folder, handler = tiny_index
    argv = ["adapt.py", "--config", str(folder / "rag.yaml"), "--root", str(folder), "--epochs", "2"]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "scripts" / "adapt.py"), run_name="__main__")
    out = capsys.readouterr()
    path = Path(out.out.strip().splitlines()[-1])
    cfg = Config.from_mapping(handler, folder)
    adapter = QueryAdapter.load(path)
    assert (
        path.parent == folder / "index" / "adapters" and path.name == f"{line_key(cfg)}-{adapter.identity}.safetensors"
    )
    assert adapter.dim == 32 and adapter.metadata["version"] == IndexLine.of(cfg).current()
    assert "held-out recall" in out.err and "recall@1" in out.err and "retrieval.query_adapter=" in out.err


def test_the_pipeline_applies_the_adapter_to_every_dense_use_and_reports_its_identity(
    pipeline_parts: tuple[Config, Encoder, IndexVersion], tmp_path: Path
) -> None:
    cfg, encoder, index = pipeline_parts
    adapter = QueryAdapter.initial(32)
    adapter.weights["weight"] = unit_rows(32, 32, seed=7)  # far from the identity: rankings must move
    path = adapter.save(tmp_path / "adapter.safetensors")
    adapted_cfg = dataclasses.replace(cfg, retrieval=dataclasses.replace(cfg.retrieval, query_adapter=str(path)))
    plain, adapted = RAGPipeline(cfg, encoder, index), RAGPipeline(adapted_cfg, encoder, index)
    assert plain.retriever.pages is not None and plain.retriever.windows is not None  # hybrid: pages and windows
    vectors = encoder.embed(QUESTIONS)
    by_hand = Retriever(index, cfg.retrieval).search(adapter.apply(vectors), QUESTIONS, 4)
    with_adapter = adapted.retrieve(QUESTIONS, 4)
    without = plain.retrieve(QUESTIONS, 4)

    def ranking(hits: list) -> list:
        return [[(h.document.id, round(h.score, 5), h.fused and round(h.fused, 5)) for h in row] for row in hits]

    assert ranking(with_adapter) == ranking(by_hand)
    assert ranking(with_adapter) != ranking(without)
    result = adapted.answer([Query(QUESTIONS[0], 2, as_json=True)]).results[0]
    assert result.index["query_adapter"] == adapter.identity
    assert "query_adapter" not in plain.answer([Query(QUESTIONS[0], 2, as_json=True)]).results[0].index


def test_an_adapter_of_another_width_is_refused_at_start(
    pipeline_parts: tuple[Config, Encoder, IndexVersion], tmp_path: Path
) -> None:
    cfg, encoder, index = pipeline_parts
    path = QueryAdapter.initial(768).save(tmp_path / "wide.npz")
    wide = dataclasses.replace(cfg, retrieval=dataclasses.replace(cfg.retrieval, query_adapter=str(path)))
    with pytest.raises(AdapterError, match=r"wide.npz \(retrieval.query_adapter\) maps 768-d vectors but .* 32-d"):
        RAGPipeline(wide, encoder, index)
    with pytest.raises(AdapterError, match="maps 768-d vectors"):
        QueryAdapter.initial(768).apply(unit_rows(2, 32))
