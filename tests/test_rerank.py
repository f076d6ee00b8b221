"""The optional cross-encoder stage (rerank.py), on a tiny random cross-encoder: its scores order the
hits, the pipeline retrieves `rerank.candidates` for it, and the JSON sources carry its score. No
reranker weights can be downloaded here, so quality is not tested (docs/indexing.md). The pipeline
test also embeds with the real all-mpnet-base-v2 (`model` mark); the others need nothing downloaded."""

from __future__ import annotations

from pathlib import Path

import pytest
from langchain_core.documents import Document

from ragserve.api.openai_rag import rag_reply
from ragserve.config import Config, ConfigError, RerankConfig
from ragserve.index.builder import refresh
from ragserve.retrieval.pipeline import RAGPipeline, StageTimes
from ragserve.retrieval.queries import Query
from ragserve.retrieval.retriever import Hit

DOCS = Path(__file__).resolve().parent / "fixtures" / "docs"


def hits_of(texts: list[str]) -> list[Hit]:
    return [Hit(Document(text, metadata={"source": f"s{i}"}), score=1.0 - i / 10) for i, text in enumerate(texts)]


def test_the_cross_encoder_scores_order_the_hits_and_k_cuts_them(tiny_cross_encoder_dir: Path) -> None:
    from sentence_transformers import CrossEncoder

    from ragserve.retrieval.rerank import Reranker

    texts = ["cats sleep a lot", "the stock market fell", "rotate the token weekly", "workers share one index"]
    questions = ["Do cats sleep?", "How often to rotate tokens?"]
    reranker = Reranker(RerankConfig(model=str(tiny_cross_encoder_dir)))
    reranked = reranker.rerank(questions, [hits_of(texts), hits_of(texts[:2])], k=3)
    expected = CrossEncoder(str(tiny_cross_encoder_dir)).predict([(questions[0], t) for t in texts])
    assert [h.document.page_content for h in reranked[0]] == [texts[i] for i in (-expected).argsort()[:3]]
    assert [h.rerank for h in reranked[0]] == pytest.approx(sorted(expected, reverse=True)[:3], abs=1e-5)
    assert len(reranked[1]) == 2 and all(h.rerank is not None for h in reranked[1])
    assert reranker.rerank(["q"], [[]], 3) == [[]]


@pytest.mark.model
def test_the_pipeline_reranks_its_candidates_and_reports_the_score(
    tiny_cross_encoder_dir: Path, model_dir: Path, tmp_path: Path, encoder
) -> None:
    cfg = Config.from_mapping(
        {
            "corpus": {"source": str(DOCS), "chunk_size": 200, "chunk_overlap": 20},
            "embedding": {"model_path": str(model_dir)},
            "compile": {"enabled": False},
            "index": {"dir": str(tmp_path / "index")},
            "rerank": {"model": str(tiny_cross_encoder_dir), "candidates": 6},
        },
        tmp_path,
    )
    refresh(cfg, lambda: encoder)
    pipeline = RAGPipeline.from_config(cfg)
    question = "How do I rotate the inference token?"
    candidates = pipeline.retriever.search(pipeline.encoder.embed([question]), [question], 6)[0]
    hits = pipeline.retrieve([question], 2)[0]
    assert len(hits) == 2 and {h.document.page_content for h in hits} <= {h.document.page_content for h in candidates}
    assert hits[0].rerank >= hits[1].rerank
    query = Query(question=question, k=2, as_json=True)
    answers = pipeline.answer([query])
    response = rag_reply(query, answers.results[0])  # the JSON contract's body
    assert answers.times.rerank_ms > 0 and answers.times.search_ms > 0 and answers.times.embed_ms > 0
    assert set(answers.times.metrics()) == {"RAGEmbedTime", "RAGSearchTime", "RAGRerankTime"}
    assert set(StageTimes(1.0, 2.0).metrics()) == {"RAGEmbedTime", "RAGSearchTime"}  # no reranker, no rerank metric
    assert [s["rerank_score"] for s in response["sources"]] == pytest.approx([h.rerank for h in hits], abs=1e-5)


def test_a_local_reranker_folder_resolves_and_a_hub_id_stays(tmp_path: Path) -> None:
    (tmp_path / "models" / "reranker").mkdir(parents=True)
    local = Config.from_mapping({"rerank": {"model": "models/reranker"}}, tmp_path)
    hub = Config.from_mapping({"rerank": {"model": "cross-encoder/ms-marco-MiniLM-L-6-v2"}}, tmp_path)
    assert local.rerank.model == str(tmp_path / "models" / "reranker")
    assert hub.rerank.model == "cross-encoder/ms-marco-MiniLM-L-6-v2" and Config().rerank.model is None
    with pytest.raises(ConfigError, match="rerank.candidates"):
        Config.from_mapping({"rerank": {"candidates": 0}}, tmp_path)
