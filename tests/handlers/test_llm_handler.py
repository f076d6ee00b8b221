"""LLMHandler through TorchServe's own Context (no server): batches, JSON replies, per-request errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fake_context import make_context
from llm_handler import LLMHandler

pytestmark = pytest.mark.model


def llm_context(llm_dir: Path, content_types: list[str]):
    handler_yaml = {
        "model_path": str(llm_dir),
        "max_new_tokens": 16,
        "max_new_tokens_limit": 32,
        "max_input_tokens": 256,
    }
    return make_context(llm_dir, handler_yaml, content_types)


@pytest.fixture(scope="module")
def handler(llm_dir: Path) -> LLMHandler:
    handler = LLMHandler()
    handler.initialize(llm_context(llm_dir, ["text/plain"]))
    return handler


def test_batch_of_two_gets_text_and_json_answers(handler: LLMHandler, llm_dir: Path) -> None:
    ctx = llm_context(llm_dir, ["text/plain", "application/json"])
    out = handler.handle(
        [
            {"body": b"What is the capital of France?"},
            {"body": {"prompt": "What is the capital of France?", "max_new_tokens": 8}},
        ],
        ctx,
    )
    assert len(out) == 2 and "Paris" in out[0]
    reply = json.loads(out[1])
    assert set(reply) == {"answer", "prompt_tokens", "completion_tokens"} and reply["completion_tokens"] <= 8


@pytest.mark.parametrize(
    ("body", "field", "status"),
    [
        ({"prompt": "hi", "max_new_tokens": 33}, "max_new_tokens", 400),
        ({"prompt": "hi", "temperature": -1}, "temperature", 400),
        ({"prompt": "hi", "stream": "yes"}, "stream", 400),
        ({"question": "hi"}, "question", 400),
        ({"prompt": "word " * 400}, "prompt", 413),
    ],
)
def test_bad_request_fails_alone_in_its_batch(handler: LLMHandler, llm_dir: Path, body, field, status) -> None:
    ctx = llm_context(llm_dir, ["application/json", "text/plain"])
    out = handler.handle([{"body": body}, {"body": b"Say hello."}], ctx)
    assert ctx.get_response_status(0)[0] == status and json.loads(out[0])["field"] == field
    assert ctx.get_response_status(1)[0] == 200 and out[1]
