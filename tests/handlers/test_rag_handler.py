"""RAGHandler through TorchServe's own Context (no server): one response per request, errors per request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ragserve.config import Config
from ragserve.index.builder import refresh
from ragserve_ops.testing import load_handler, make_context

RAGHandler = load_handler("rag").RAGHandler  # loaded from its file, as TorchServe does

DOCS = Path(__file__).resolve().parent.parent / "fixtures" / "docs"
pytestmark = pytest.mark.model


def handler_section(model_dir: Path, index_dir: Path) -> dict:
    return {
        "corpus": {"source": str(DOCS), "chunk_size": 300, "chunk_overlap": 30},
        "embedding": {"model_path": str(model_dir)},
        "compile": {"enabled": False},
        "index": {"dir": str(index_dir), "follow_s": 0},
        "profile": True,
    }


def rag_context(model_dir: Path, index_dir: Path, content_types: list[str]):
    return make_context(index_dir, handler_section(model_dir, index_dir), content_types)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory, model_dir: Path, encoder) -> Path:
    """The index a worker loads, built ahead as `make index` does (workers never build)."""
    folder = tmp_path_factory.mktemp("index")
    refresh(Config.from_mapping(handler_section(model_dir, folder), folder), lambda: encoder)
    return folder


@pytest.fixture(scope="module")
def handler(model_dir: Path, index_dir: Path) -> RAGHandler:
    handler = RAGHandler()
    handler.initialize(rag_context(model_dir, index_dir, ["text/plain"]))
    return handler


def test_batch_of_two_gets_two_responses(handler: RAGHandler, model_dir: Path, index_dir: Path) -> None:
    ctx = rag_context(model_dir, index_dir, ["text/plain", "application/json"])
    out = handler.handle([{"body": b"Who is Quilla?"}, {"body": {"question": "How to rotate tokens?", "k": 1}}], ctx)
    assert len(out) == 2
    assert out[0].startswith("Use the following pieces of context") and "Quilla" in out[0]
    body = json.loads(out[1])
    assert len(body["sources"]) == 1 and body["sources"][0]["path"] == "docs/tokens.md"
    assert ctx.get_response_status(0)[0] == ctx.get_response_status(1)[0] == 200


def test_one_bad_request_in_a_batch_fails_alone(handler: RAGHandler, model_dir: Path, index_dir: Path) -> None:
    ctx = rag_context(model_dir, index_dir, ["text/plain", "application/json", "text/plain"])
    out = handler.handle([{"body": b"Who is Quilla?"}, {"body": b"{broken"}, {"body": b"   "}], ctx)
    assert len(out) == 3 and "Quilla" in out[0]
    assert ctx.get_response_status(1)[0] == 400 and "malformed JSON" in json.loads(out[1])["error"]["message"]
    assert ctx.get_response_status(2)[0] == 400 and json.loads(out[2])["error"]["param"] == "body"
    assert ctx.get_response_headers(1)["content-type"] == "application/json"
