"""OpenAI-compatible routes of the RAG endpoint: POST v1/embeddings (OpenAI's schema, TEI's `truncate`), POST
v1/retrieval (ours: the top-k chunks with scores and metadata, filters as on the JSON contract), GET v1/models,
beside the endpoint's own JSON/text contract (api/contracts.py).

Public names: TokenCounter, decode_rag_request, decode_embeddings, decode_retrieval, embeddings_body,
retrieval_body, rag_reply.
No TorchServe imports.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from ragserve.api.contracts import (
    RequestError,
    check_text,
    check_unicode,
    decode_filter,
    decode_request,
    integer_field,
    quote,
    read_payload,
)
from ragserve.api.openai_api import (
    OpenAIError,
    as_openai_error,
    models_body,
    route_of,
    v1_body,
)
from ragserve.config import Config, RetrievalConfig
from ragserve.retrieval.pipeline import Retrieved
from ragserve.retrieval.prompt import format_sources
from ragserve.retrieval.queries import EmbeddingsQuery, Query, RetrievalQuery

TokenCounter = Callable[[list[str]], list[int]]  # texts -> tokens of each (the encoder's tokenizer)


def decode_embeddings(
    payload: Any, models: Sequence[str], cfg: RetrievalConfig, count_tokens: TokenCounter, max_seq_length: int
) -> EmbeddingsQuery:
    """OpenAI's embeddings request: input (a string or a list of strings), model, encoding_format, and TEI's
    `truncate`. At most retrieval.max_embedding_inputs inputs, max_embedding_chars characters and
    max_embedding_tokens tokens in all (413 past any), as TEI bounds a request (--max-client-batch-size,
    --max-batch-tokens): one request holds a worker. An input longer than the model reads (max_seq_length tokens)
    is refused with 413, as OpenAI, TEI and vLLM do, unless `"truncate": true` asks for its first tokens' vector:
    a vector of part of a text, returned as the text's, would be a silent wrong answer.
    count_tokens: the encoder's tokenizer, uncut (api/ holds no model)."""
    payload, model = v1_body(payload, {"input", "model", "encoding_format", "dimensions", "truncate"}, models)
    texts = payload.get("input")
    texts = [texts] if isinstance(texts, str) else texts
    if not isinstance(texts, list) or not texts:
        raise OpenAIError("'input' must be a string or a non-empty list of strings", "input")
    if not all(isinstance(text, str) for text in texts):
        raise OpenAIError("'input' holds token ids or other non-strings: send text (no tokenizer here matches)",
                          "input")  # fmt: skip
    if len(texts) > cfg.max_embedding_inputs:
        raise OpenAIError(f"'input' has {len(texts)} items; the limit is {cfg.max_embedding_inputs} per request "
                          "(retrieval.max_embedding_inputs)", "input", 413)  # fmt: skip
    chars = sum(len(text) for text in texts)
    if chars > cfg.max_embedding_chars:
        raise OpenAIError(f"'input' has {chars} characters; the limit is {cfg.max_embedding_chars} per request "
                          "(retrieval.max_embedding_chars)", "input", 413)  # fmt: skip
    for i, text in enumerate(texts):
        if not text.strip():
            raise OpenAIError(f"'input[{i}]' is empty", f"input[{i}]")
        try:
            check_unicode(text, f"input[{i}]", f"'input[{i}]'")
        except RequestError as err:
            raise as_openai_error(err) from err
    truncate = payload.get("truncate", False)
    if not isinstance(truncate, bool):
        raise OpenAIError(f"'truncate' must be true or false, got {quote(truncate)}", "truncate")
    tokens = count_tokens(texts)  # after the character bound: a tokenizer pass over at most max_embedding_chars
    if sum(tokens) > cfg.max_embedding_tokens:
        raise OpenAIError(f"'input' has {sum(tokens)} tokens; the limit is {cfg.max_embedding_tokens} per request "
                          "(retrieval.max_embedding_tokens)", "input", 413)  # fmt: skip
    longest = max(range(len(texts)), key=tokens.__getitem__)
    if tokens[longest] > max_seq_length and not truncate:
        raise OpenAIError(f"'input[{longest}]' has {tokens[longest]} tokens; the model reads at most {max_seq_length} "
                          "(embedding.max_seq_length): split it, or send \"truncate\": true to embed its first "
                          f"{max_seq_length}", f"input[{longest}]", 413)  # fmt: skip
    encoding = payload.get("encoding_format", "float")
    if encoding not in ("float", "base64"):
        raise OpenAIError(f"'encoding_format' must be 'float' or 'base64', got {quote(encoding)}", "encoding_format")
    if payload.get("dimensions") is not None:
        raise OpenAIError("'dimensions' is not supported: the model gives its full vectors only", "dimensions")
    read = sum(min(count, max_seq_length) for count in tokens)  # what the encoder reads of each: usage
    return EmbeddingsQuery(tuple(texts), model, encoding == "base64", read)


def embeddings_body(query: EmbeddingsQuery, vectors: np.ndarray, tokens: int) -> dict[str, Any]:
    """OpenAI's embeddings response; base64 is the little-endian float32 bytes, as OpenAI sends them."""
    data = []
    for i, vector in enumerate(np.asarray(vectors, dtype="<f4")):
        embedding = base64.b64encode(vector.tobytes()).decode() if query.as_base64 else vector.tolist()
        data.append({"object": "embedding", "index": i, "embedding": embedding})
    usage = {"prompt_tokens": tokens, "total_tokens": tokens}
    return {"object": "list", "data": data, "model": query.model, "usage": usage}


def decode_retrieval(payload: Any, models: Sequence[str], cfg: RetrievalConfig) -> RetrievalQuery:
    """Our retrieval route: {"model", "query", "k", "filter"} -> the top-k chunks, filtered before the top-k."""
    payload, model = v1_body(payload, {"model", "query", "k", "filter"}, models)
    try:
        question = check_text(payload.get("query"), "query", cfg.max_question_chars, "query")
        k = integer_field(payload, "k", cfg.top_k, cfg.max_k)
        where = decode_filter(payload["filter"]) if "filter" in payload else None
    except RequestError as err:
        raise as_openai_error(err) from err
    return RetrievalQuery(question, k, where, model)


def retrieval_body(query: RetrievalQuery, sources: list[dict[str, Any]], index: dict[str, Any]) -> dict[str, Any]:
    data = [{"object": "retrieval.chunk", "index": rank, **source} for rank, source in enumerate(sources)]
    return {"object": "list", "data": data, "model": query.model, "index": index}


def rag_reply(query: Query | RetrievalQuery | EmbeddingsQuery, result: Retrieved) -> str | dict[str, Any]:
    """The wire body of one RAG pipeline result: the prompt text, {"prompt", "sources", "index"}, a v1/retrieval
    list or a v1/embeddings list, by what was asked."""
    if isinstance(query, EmbeddingsQuery):
        return embeddings_body(query, result.vectors, result.tokens)
    if isinstance(query, RetrievalQuery):
        return retrieval_body(query, format_sources(result.hits), result.index)
    if not query.as_json:
        return result.prompt
    return {"prompt": result.prompt, "sources": format_sources(result.hits), "index": result.index}


def decode_rag_request(
    request: dict[str, Any],
    content_type: str | None,
    url_path: str | None,
    cfg: Config,
    models: Sequence[str],
    count_tokens: TokenCounter,
) -> Query | RetrievalQuery | EmbeddingsQuery | dict[str, Any]:
    """A RAG endpoint request by its route: the JSON/text contract, v1/embeddings, v1/retrieval, or the
    finished reply of GET v1/models. Errors of a v1 route come in OpenAI's shape. count_tokens: the encoder's
    tokenizer, uncut (Encoder.count_tokens with truncate=False), for v1/embeddings' bounds."""
    route = route_of(url_path)
    if route is None:
        return decode_request(request, content_type, cfg.retrieval)
    if route == "v1/models":
        return models_body(models)
    try:
        payload = read_payload(request, content_type, "input")
    except RequestError as err:
        raise as_openai_error(err) from err
    if route == "v1/embeddings":
        return decode_embeddings(payload, models, cfg.retrieval, count_tokens, cfg.embedding.max_seq_length)
    if route == "v1/retrieval":
        return decode_retrieval(payload, models, cfg.retrieval)
    raise OpenAIError(f"{route} is served by the LLM endpoint, not this one", None, 404)
