"""scripts/query.py's OpenAI-style client (for TorchServe's vllm_handler), on recorded reply shapes."""

from __future__ import annotations

import json

import pytest

from ragserve_ops.ask import openai_answer, openai_body, openai_deltas, source_lines


def test_openai_body_is_a_chat_completion_request() -> None:
    body = json.loads(openai_body("the RAG prompt", "llm", stream_reply=True))
    assert body == {"model": "llm", "messages": [{"role": "user", "content": "the RAG prompt"}], "stream": True}


def test_openai_answer_reads_the_first_choice() -> None:
    reply = {"object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": "8K"}}]}
    assert openai_answer(json.dumps(reply)) == "8K"
    with pytest.raises(SystemExit, match="error"):
        openai_answer(json.dumps({"object": "error", "message": "model not found"}))


def test_openai_deltas_join_events_split_across_chunks() -> None:
    def event(content: str | None) -> str:
        delta = {"content": content} if content is not None else {"role": "assistant"}
        return "data: " + json.dumps({"choices": [{"index": 0, "delta": delta}]}) + "\n\n"

    stream = event(None) + event("Llama 3 ") + event("has 8K") + event(" tokens.") + "data: [DONE]\n\n"
    chunks = [stream[i : i + 7] for i in range(0, len(stream), 7)]  # TorchServe flushes at arbitrary points
    assert "".join(openai_deltas(chunks)) == "Llama 3 has 8K tokens."


def test_source_lines_name_each_retrieved_chunk_best_first() -> None:
    sources = [
        {"path": "docs/security.md", "title": "Security", "score": 0.61, "fused_score": 0.93, "text": "..."},
        {"url": "http://x/blog/llama31", "title": "Llama 3.1", "published": "2024-07-23", "score": 0.5, "text": ""},
    ]
    assert source_lines(sources) == [
        "  [1] Security (docs/security.md; score 0.930)",
        "  [2] Llama 3.1 (http://x/blog/llama31, published 2024-07-23; score 0.500)",
    ]
