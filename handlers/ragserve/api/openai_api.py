"""OpenAI-compatible routes: request decoding, response bodies and server-sent events, for both endpoints.

Public names: OpenAIError, route_of, decode_rag_request, EmbeddingsQuery, RetrievalQuery, ChatQuery,
decode_embeddings, decode_retrieval, decode_chat, embeddings_body, retrieval_body, models_body, ChatReply,
DeltaText.
TorchServe hands a request to /predictions/<model>/<version>/v1/... to the handler with the rest of the
path in the `url_path` header (TorchServe's own vllm_handler routes the same way); route_of reads it.
RAG endpoint: POST v1/embeddings (OpenAI's schema), POST v1/retrieval (ours: the top-k chunks with
scores and metadata, filters as on the JSON contract), GET v1/models. LLM endpoint: POST
v1/chat/completions (plain or `stream: true` as server-sent events), GET v1/models. A parameter the
model cannot honour is refused with HTTP 400 in OpenAI's error shape, never ignored.
Grounded chat: the model `<name>-rag`, or the extra field `rag: true | {"k", "filter"}`: the last user
message goes to the RAG endpoint and the answer carries the sources (api/ragclient.py), as `sources` and as
OpenAI's url_citation annotations (citations.py). `tools` are accepted and never called.
No TorchServe imports.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from ragserve.api.citations import annotations
from ragserve.api.contracts import (
    LLMQuery,
    RequestError,
    check_text,
    check_unicode,
    decode_filter,
    decode_request,
    integer_field,
    number_field,
    quote,
    read_payload,
)
from ragserve.config import Config, LLMConfig, RetrievalConfig
from ragserve.retrieval.pipeline import Retrieved
from ragserve.retrieval.prompt import format_sources
from ragserve.retrieval.queries import EmbeddingsQuery, Query, RetrievalQuery

if TYPE_CHECKING:
    from ragserve.llm.generation import Completion

ROUTES = ("v1/embeddings", "v1/retrieval", "v1/chat/completions", "v1/models")
ROLES = ("system", "developer", "user", "assistant")
MAX_STOPS = 4  # OpenAI's limit
EVENT_STREAM = "text/event-stream"
DONE = "data: [DONE]\n\n"
TokenCounter = Callable[[list[str]], list[int]]  # texts -> tokens of each (the encoder's tokenizer)
# Fields OpenAI clients send that change nothing here when left at these values; any other value is refused.
NEUTRAL = {
    "n": (1, None),
    "presence_penalty": (0, 0.0, None),
    "frequency_penalty": (0, 0.0, None),
    "logprobs": (False, None),
    "top_logprobs": (None,),
    "logit_bias": (None,),
    "parallel_tool_calls": (None, True, False),
    "seed": (None,),
    "service_tier": (None, "auto", "default"),
    "store": (None, False),
    "modalities": (None, ["text"]),
    "prediction": (None,),
    "audio": (None,),
    "reasoning_effort": (None,),
}
IGNORED = {"user", "metadata"}  # bookkeeping fields with no effect on the answer
# Tools are accepted and never called (a text answer is valid under "auto"); a choice that demands a call is refused.
TOOLS = {"tools": "tool_choice", "functions": "function_call"}  # the tool list -> the field that chooses from it
TEXT_CHOICES = (None, "auto", "none")


class OpenAIError(RequestError):
    """A request error reported in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message, param or "body", status)
        self.param = param
        self.code = code


def route_of(url_path: str | None) -> str | None:
    """The OpenAI route of a request (None: the endpoint's own contract); an unknown one is a 404."""
    if not url_path:
        return None
    route = url_path.strip("/")
    if route not in ROUTES:
        raise OpenAIError(f"unknown route {quote(route)}; this server has {', '.join(ROUTES)}", None, 404)
    return route


def _object(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise OpenAIError("the body must be a JSON object (send Content-Type: application/json)")
    return payload


def _known(payload: dict[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(payload) - allowed - IGNORED)
    if unknown:
        raise OpenAIError(f"unsupported parameter {quote(unknown[0])}", unknown[0])


def _model(payload: dict[str, Any], models: Sequence[str]) -> str:
    model = payload.get("model")
    if not isinstance(model, str):
        raise OpenAIError("'model' is required: one of " + ", ".join(models), "model")
    if model not in models:
        raise OpenAIError(f"the model {quote(model)} does not exist here; use one of {list(models)}", "model", 404,
                          "model_not_found")  # fmt: skip
    return model


def _openai(err: RequestError) -> OpenAIError:
    """A RequestError of the endpoints' own validators, re-raised in OpenAI's shape."""
    return OpenAIError(str(err), err.field, err.status)


# ----------------------------------------------------------------------------- RAG endpoint


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
    payload = _object(payload)
    _known(payload, {"input", "model", "encoding_format", "dimensions", "truncate"})
    model = _model(payload, models)
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
            raise _openai(err) from err
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
    payload = _object(payload)
    _known(payload, {"model", "query", "k", "filter"})
    model = _model(payload, models)
    try:
        question = check_text(payload.get("query"), "query", cfg.max_question_chars, "query")
        k = integer_field(payload, "k", cfg.top_k, cfg.max_k)
        where = decode_filter(payload["filter"]) if "filter" in payload else None
    except RequestError as err:
        raise _openai(err) from err
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


def models_body(models: Sequence[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "ragserve"} for name in models],
    }


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
        raise _openai(err) from err
    if route == "v1/embeddings":
        return decode_embeddings(payload, models, cfg.retrieval, count_tokens, cfg.embedding.max_seq_length)
    if route == "v1/retrieval":
        return decode_retrieval(payload, models, cfg.retrieval)
    raise OpenAIError(f"{route} is served by the LLM endpoint, not this one", None, 404)


# ----------------------------------------------------------------------------- LLM endpoint


@dataclass(frozen=True)
class Grounding:
    """Chat grounded on retrieval: how many chunks, which ones."""

    k: int | None = None  # None: the RAG endpoint's top_k
    filter: dict[str, Any] | None = None  # the RAG endpoint's filter object, checked here and sent as is


@dataclass(frozen=True)
class ChatQuery(LLMQuery):
    """An LLMQuery whose prompt is a chat (messages), with what the OpenAI reply needs."""

    model: str = ""
    include_usage: bool = False
    grounding: Grounding | None = None
    sources: tuple[dict[str, Any], ...] | None = None  # grounded: what the RAG endpoint retrieved


def decode_chat(payload: Any, cfg: LLMConfig, models: Sequence[str], rag_model: str | None) -> ChatQuery:
    """OpenAI's chat completion request; refuses (400, naming it) whatever this model cannot honour."""
    payload = _object(payload)
    allowed = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "stream",
               "stream_options", "rag", "response_format", *NEUTRAL, *TOOLS.keys(), *TOOLS.values()}  # fmt: skip
    _known(payload, allowed)
    model = _model(payload, models)
    for name, neutral in NEUTRAL.items():
        if name in payload and payload[name] not in neutral:
            raise OpenAIError(f"'{name}' = {quote(payload[name])} is not supported by this server", name)
    _check_tools(payload)
    response_format = payload.get("response_format")
    if response_format not in (None, {"type": "text"}):
        raise OpenAIError("'response_format' other than text is not supported", "response_format")
    messages = _messages(payload.get("messages"), cfg.generate.max_prompt_chars)
    max_tokens = _max_tokens(payload, cfg)
    try:
        temperature = number_field(payload, "temperature", cfg.generate.temperature, 0.0, 2.0) if payload.get(
            "temperature") is not None else None  # fmt: skip
        top_p = (
            number_field(payload, "top_p", cfg.generate.top_p, 1e-6, 1.0)
            if payload.get("top_p") is not None
            else cfg.generate.top_p
        )
    except RequestError as err:
        raise _openai(err) from err
    stream = payload.get("stream") or False
    if not isinstance(stream, bool):
        raise OpenAIError("'stream' must be true or false", "stream")
    options = payload.get("stream_options") or {}
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise OpenAIError("'stream_options' may hold 'include_usage' only", "stream_options")
    grounding = _grounding(payload.get("rag"), model == rag_model)
    if grounding is not None and all(m["role"] != "user" for m in messages):
        raise OpenAIError("a chat grounded on retrieval needs a user message (its last one is the question)",
                          "messages")  # fmt: skip
    return ChatQuery(
        prompt=messages,  # type: ignore[arg-type]  # Generator.format takes messages as well as text
        max_new_tokens=max_tokens,
        do_sample=temperature > 0 if temperature is not None else cfg.generate.do_sample,
        temperature=temperature or cfg.generate.temperature,
        top_p=top_p,
        repetition_penalty=cfg.generate.repetition_penalty,
        no_repeat_ngram_size=cfg.generate.no_repeat_ngram_size,
        stream=stream,
        as_json=True,
        model=model,
        stop=_stops(payload.get("stop")),
        include_usage=bool(options.get("include_usage")),
        grounding=grounding,
    )


def _check_tools(payload: dict[str, Any]) -> None:
    """`tools` (or the older `functions`) are accepted and never called; a choice that forces a call is refused."""
    for tools, choice in TOOLS.items():
        if payload.get(tools) is not None and not isinstance(payload[tools], list):
            raise OpenAIError(f"'{tools}' must be a list, got {quote(payload[tools])}", tools)
        if payload.get(choice) not in TEXT_CHOICES:
            raise OpenAIError(f"'{choice}' = {quote(payload[choice])} demands a tool call; this server answers in text "
                              "only: send 'auto' or 'none', or leave it out", choice)  # fmt: skip


def _max_tokens(payload: dict[str, Any], cfg: LLMConfig) -> int:
    """max_completion_tokens (or the older max_tokens): any positive integer, clamped to generate.max_new_tokens_limit
    as vLLM and OpenAI accept a value past what the model can write (finish_reason "length" says it was cut).
    The context left after the prompt clamps it further once the prompt is counted (llm_routes.py)."""
    name = "max_completion_tokens" if payload.get("max_completion_tokens") is not None else "max_tokens"
    if payload.get(name) is None:
        return cfg.generate.max_new_tokens
    value = payload[name]
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise OpenAIError(f"'{name}' must be a positive integer, got {quote(value)}", name)
    return min(value, cfg.generate.max_new_tokens_limit)


def _messages(value: Any, max_chars: int) -> tuple[dict[str, str], ...]:
    if not isinstance(value, list) or not value:
        raise OpenAIError("'messages' must be a non-empty list of {role, content}", "messages")
    messages = []
    for i, message in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            raise OpenAIError(f"'{where}' must be an object with a role in {ROLES}", f"{where}.role")
        unknown = sorted(set(message) - {"role", "content", "name"})
        if unknown:
            raise OpenAIError(f"'{where}.{unknown[0]}' is not supported: this server never calls tools, so "
                              "a chat holds no tool calls or results", f"{where}.{unknown[0]}")  # fmt: skip
        content = message.get("content")
        if isinstance(content, list):  # content parts: text only
            if not all(
                isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str) for p in content
            ):
                raise OpenAIError(f"'{where}.content' may hold text parts only", f"{where}.content")
            content = "".join(part["text"] for part in content)
        if not isinstance(content, str):
            raise OpenAIError(f"'{where}.content' must be a string", f"{where}.content")
        if any(ord(c) < 32 and c not in "\t\n\r" for c in content):
            raise OpenAIError(f"'{where}.content' contains control characters", f"{where}.content")
        try:
            check_unicode(content, f"{where}.content", f"'{where}.content'")
        except RequestError as err:
            raise _openai(err) from err
        role = "system" if message["role"] == "developer" else message["role"]
        messages.append({"role": role, "content": content})
    if sum(len(m["content"]) for m in messages) > max_chars:
        raise OpenAIError(f"the messages exceed {max_chars} characters", "messages", 413)
    if not messages[-1]["content"].strip():
        raise OpenAIError("the last message is empty", f"messages[{len(messages) - 1}].content")
    return tuple(messages)


def _stops(value: Any) -> tuple[str, ...]:
    stops = [value] if isinstance(value, str) else (value or [])
    if not isinstance(stops, list) or len(stops) > MAX_STOPS or not all(isinstance(s, str) and s for s in stops):
        raise OpenAIError(f"'stop' must be a string or a list of up to {MAX_STOPS} non-empty strings", "stop")
    return tuple(stops)


def _grounding(value: Any, by_model: bool) -> Grounding | None:
    if value in (None, False):
        return Grounding() if by_model else None
    if value is True:
        return Grounding()
    if not isinstance(value, dict) or set(value) - {"k", "filter"}:
        raise OpenAIError("'rag' must be true or an object with 'k' and 'filter'", "rag")
    k = value.get("k")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise OpenAIError("'rag.k' must be a positive integer", "rag.k")
    if "filter" in value:
        try:
            decode_filter(value["filter"], "rag.filter")
        except RequestError as err:
            raise _openai(err) from err
    return Grounding(k, value.get("filter"))


class DeltaText:
    """Text as an OpenAI client sees it: leading and trailing whitespace dropped (as in Completion.text) and
    cut before the first stop string. feed() returns what may be streamed now and finish() the rest, holding
    back only what could still be trailing whitespace or the start of a stop string; whole() cuts a
    non-streamed answer the same way."""

    def __init__(self, stops: tuple[str, ...]) -> None:
        self.stops = stops
        self.text = ""  # everything received, leading whitespace dropped
        self.sent = 0
        self.stopped = False  # a stop string was found

    def feed(self, piece: str) -> str:
        if self.stopped:
            return ""
        self.text = self.text + piece if self.text else piece.lstrip()
        cut = self._cut()
        if cut is not None:
            self.stopped = True
            return self._send(self.text[:cut].rstrip())
        hold = max((len(s) - 1 for s in self.stops), default=0)
        return self._send(self.text[: max(self.sent, len(self.text) - hold)].rstrip())

    def finish(self) -> str:
        return "" if self.stopped else self._send(self.text.rstrip())

    def whole(self, text: str) -> str:
        self.text = text.lstrip()
        cut = self._cut()
        self.stopped = cut is not None
        return self.text[: len(self.text) if cut is None else cut].rstrip()

    def _cut(self) -> int | None:
        found = [i for i in (self.text.find(s) for s in self.stops) if i >= 0]
        return min(found) if found else None

    def _send(self, upto: str) -> str:
        piece = upto[self.sent :]
        self.sent = max(self.sent, len(upto))
        return piece


@dataclass
class ChatReply:
    """One chat completion's bodies: chunk events while streaming, then the end (or the whole JSON)."""

    query: ChatQuery  # its sources (grounded chat) end the reply
    id: str = field(default_factory=lambda: f"chatcmpl-{uuid.uuid4().hex}")
    created: int = field(default_factory=lambda: int(time.time()))
    started: bool = False
    delta: DeltaText = field(init=False)

    def __post_init__(self) -> None:
        self.delta = DeltaText(self.query.stop)

    def piece(self, text: str) -> str:
        """The events for a decoded piece ("" when nothing can be sent yet)."""
        events = "" if self.started else self._chunk({"role": "assistant", "content": ""})
        self.started = True
        content = self.delta.feed(text)
        return events + (self._chunk({"content": content}) if content else "")

    def end(self, completion: Completion) -> str:
        """Streamed: the last events and [DONE]; plain: the whole chat.completion JSON."""
        usage = {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": completion.completion_tokens,
            "total_tokens": completion.prompt_tokens + completion.completion_tokens,
        }
        sources = self.query.sources
        if not self.query.stream:
            message = {"role": "assistant", "content": self.delta.whole(completion.text)}
            if sources is not None:
                message["annotations"] = annotations(sources, len(message["content"]))
            finish = self._finish_reason(completion)
            body = {**self._head("chat.completion"), "choices": [{"index": 0, "message": message, "logprobs": None,
                    "finish_reason": finish}], "usage": usage}  # fmt: skip
            return json.dumps({**body, **({"sources": list(sources)} if sources is not None else {})})
        events = self.piece("")  # the role chunk, if nothing was streamed yet
        rest = self.delta.finish()
        events += self._chunk({"content": rest}) if rest else ""
        if sources:  # in a chunk with a choice: clients (Open WebUI) skip events whose choices are empty
            events += self._chunk({"annotations": annotations(sources, self.delta.sent)})
        events += self._chunk({}, self._finish_reason(completion))
        if self.query.include_usage:
            events += _sse({**self._head("chat.completion.chunk"), "choices": [], "usage": usage})
        if sources is not None:  # the last event before [DONE]
            events += _sse({**self._head("chat.completion.chunk"), "choices": [], "sources": list(sources)})
        return events + DONE

    @property
    def content_type(self) -> str:
        return EVENT_STREAM if self.query.stream else "application/json"

    def _finish_reason(self, completion: Completion) -> str:
        if self.delta.stopped:
            return "stop"
        return "length" if completion.completion_tokens >= self.query.max_new_tokens else "stop"

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.query.model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**self._head("chat.completion.chunk"), "choices": [choice]})


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event)}\n\n"
