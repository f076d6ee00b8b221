"""The default corpus is the frozen corpus/ragserve-docs/ (not docs/), and `make run`'s question finds its answer."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from ragserve.config import Config, CorpusConfig
from ragserve.index.builder import refresh
from ragserve.index.store import load_current
from ragserve.retrieval.pipeline import RAGPipeline

ROOT = Path(__file__).resolve().parent.parent
FROZEN = ROOT / "corpus" / "ragserve-docs"
RAG_DOCS = ROOT / "configs" / "rag-docs.yaml"


def make_default(name: str) -> str:
    """A `NAME ?= value` default of the Makefile (Q: make run's sample question, K: the chunks it asks for)."""
    found = re.search(rf"^{name} \?= (.+)$", (ROOT / "Makefile").read_text(), re.MULTILINE)
    assert found, f"Makefile has no `{name} ?=` line"
    return found.group(1).strip()


def test_rag_docs_yaml_and_the_config_default_read_the_frozen_folder_not_docs() -> None:
    assert Config.from_yaml(RAG_DOCS, root=ROOT).corpus.source == str(FROZEN)
    assert (ROOT / CorpusConfig().source).resolve() == FROZEN
    assert sorted(p.name for p in FROZEN.glob("*.md")), f"{FROZEN} holds no pages"


@pytest.mark.model
def test_make_runs_question_finds_the_deployment_page_first(tmp_path: Path, model_dir: Path, encoder) -> None:
    """Builds the whole default corpus with rag-docs.yaml's settings (about 60 s of embedding on 2 cores)."""
    cfg = Config.from_yaml(RAG_DOCS, root=ROOT)
    cfg = dataclasses.replace(cfg, index=dataclasses.replace(cfg.index, dir=str(tmp_path / "index")))
    refresh(cfg, lambda: encoder)
    pipeline = RAGPipeline(cfg, encoder, load_current(cfg, encoder))
    hits = pipeline.retrieve([make_default("Q")], int(make_default("K")))[0]
    top = FROZEN.parent / hits[0].document.metadata["source"]  # sources are relative to the corpus folder's parent
    assert top == FROZEN / "deployment.md", [h.document.metadata["source"] for h in hits]
