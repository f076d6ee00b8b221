"""api/openai_rag.py without a server: v1/embeddings' checks and bounds (the server tests: test_openai_server.py)."""

from __future__ import annotations

import pytest

from ragserve.api.openai_api import OpenAIError
from ragserve.api.openai_rag import decode_embeddings
from ragserve.api.replies import error_json
from ragserve.config import RetrievalConfig


def words(texts: list[str]) -> list[int]:
    """A stand-in tokenizer: words plus the two special tokens (the server tests use the model's own)."""
    return [len(text.split()) + 2 for text in texts]


def test_embeddings_requests_are_checked() -> None:
    cfg = RetrievalConfig(max_embedding_chars=100)
    query = decode_embeddings({"model": "m", "input": ["a", "b"], "encoding_format": "base64"}, ["m"], cfg, words, 384)
    assert query.texts == ("a", "b") and query.as_base64
    with pytest.raises(OpenAIError, match="does not exist") as err:
        decode_embeddings({"model": "other", "input": "a"}, ["m"], cfg, words, 384)
    assert err.value.status == 404 and error_json(err.value)["error"]["code"] == "model_not_found"


@pytest.mark.parametrize(
    ("texts", "limit"),
    [
        (["a"] * 33, "the limit is 32 per request (retrieval.max_embedding_inputs)"),
        (["x" * 20_000, "y" * 12_769], "the limit is 32768 per request (retrieval.max_embedding_chars)"),
        ("x" * 32_769, "the limit is 32768 per request (retrieval.max_embedding_chars)"),
        (["x" * 2048] * 2048, "the limit is 32 per request"),  # the request that held a worker for minutes
    ],
)
def test_embeddings_past_the_per_request_bounds_are_a_413_naming_input_and_the_limit(texts: list, limit: str) -> None:
    with pytest.raises(OpenAIError) as err:
        decode_embeddings({"model": "m", "input": texts}, ["m"], RetrievalConfig(), words, 384)
    error = error_json(err.value)["error"]
    assert err.value.status == 413 and error["param"] == "input" and limit in error["message"]
    at_limit = ["a"] * 32 if isinstance(texts, list) and len(texts) == 33 else "x" * 32_768
    assert decode_embeddings({"model": "m", "input": at_limit}, ["m"], RetrievalConfig(), words, 384).texts


def test_embeddings_past_the_token_bounds_are_a_413_and_truncate_opts_in_as_in_tei() -> None:
    cfg = RetrievalConfig(max_embedding_tokens=1000)
    with pytest.raises(OpenAIError) as err:  # 3 x 400 tokens: over the request's 1,000
        decode_embeddings({"model": "m", "input": ["w " * 398] * 3}, ["m"], cfg, words, 512)
    assert err.value.status == 413 and "the limit is 1000 per request (retrieval.max_embedding_tokens)" in str(
        err.value
    )
    long = {"model": "m", "input": ["short text", "w " * 500]}  # 502 tokens, the model reads 384
    with pytest.raises(OpenAIError) as err:
        decode_embeddings(long, ["m"], cfg, words, 384)
    error = error_json(err.value)["error"]
    assert err.value.status == 413 and error["param"] == "input[1]"
    assert "502 tokens; the model reads at most 384" in error["message"] and '"truncate": true' in error["message"]
    assert decode_embeddings({**long, "truncate": True}, ["m"], cfg, words, 384).texts == tuple(long["input"])
    with pytest.raises(OpenAIError, match="'truncate' must be true or false") as err:
        decode_embeddings({**long, "truncate": "yes"}, ["m"], cfg, words, 384)
    assert err.value.status == 400
