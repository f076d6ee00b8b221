"""OpenAI-compatible chat of the LLM endpoint: POST v1/chat/completions decoded (plain or `stream: true`), and its
reply as one JSON body or as server-sent events.

Public names: Grounding, ChatQuery, decode_chat, DeltaText, ChatReply.
Grounded chat: the model `<name>-rag`, or the extra field `rag: true | {"k", "filter"}`: the last user
message goes to the RAG endpoint and the answer carries the sources (api/ragclient.py), as `sources` and as
OpenAI's url_citation annotations (citations.py). `tools` are accepted and never called.
No TorchServe imports.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ragserve.api.citations import annotations
from ragserve.api.contracts import LLMQuery, RequestError, check_unicode, decode_filter, number_field, quote
from ragserve.api.openai_api import OpenAIError, as_openai_error, v1_body
from ragserve.config import LLMConfig
from ragserve.llm.generation import Sampling

if TYPE_CHECKING:
    from ragserve.llm.generation import Completion

ROLES = ("system", "developer", "user", "assistant")
MAX_STOPS = 4  # OpenAI's limit
EVENT_STREAM = "text/event-stream"
DONE = "data: [DONE]\n\n"
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
# Tools are accepted and never called (a text answer is valid under "auto"); a choice that demands a call is refused.
TOOLS = {"tools": "tool_choice", "functions": "function_call"}  # the tool list -> the field that chooses from it
TEXT_CHOICES = (None, "auto", "none")


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


CHAT_FIELDS = {"model", "messages", "max_tokens", "max_completion_tokens", "temperature", "top_p", "stop", "stream",
               "stream_options", "rag", "response_format", *NEUTRAL, *TOOLS.keys(), *TOOLS.values()}  # fmt: skip


def decode_chat(payload: Any, cfg: LLMConfig, models: Sequence[str], rag_model: str | None) -> ChatQuery:
    """OpenAI's chat completion request; refuses (400, naming it) whatever this model cannot honour.

    In three steps, each refusing in OpenAI's shape: the v1 envelope (openai_api.v1_body); this route's own
    fields, read here; then the checks the endpoints' own contracts share (contracts.py: Unicode, number ranges,
    the filter)."""
    payload, model = v1_body(payload, CHAT_FIELDS, models)
    _check_neutral_and_tools(payload)
    messages = _messages(payload.get("messages"), cfg.generate.max_prompt_chars)
    max_tokens, stops = _max_tokens(payload, cfg), _stops(payload.get("stop"))
    stream, include_usage = _streaming(payload.get("stream"), payload.get("stream_options"))
    grounding = _grounding(payload.get("rag"), model == rag_model)
    if grounding is not None and all(m["role"] != "user" for m in messages):
        raise OpenAIError("a chat grounded on retrieval needs a user message (its last one is the question)",
                          "messages")  # fmt: skip
    try:
        for i, message in enumerate(messages):
            check_unicode(message["content"], f"messages[{i}].content", f"'messages[{i}].content'")
        temperature = payload.get("temperature")
        if temperature is not None:
            temperature = number_field(payload, "temperature", cfg.generate.temperature, 0.0, 2.0)
        top_p = cfg.generate.top_p
        if payload.get("top_p") is not None:
            top_p = number_field(payload, "top_p", top_p, 1e-6, 1.0)
        rag = payload.get("rag")
        if isinstance(rag, dict) and "filter" in rag:  # present, even null: the RAG endpoint's contract refuses null
            decode_filter(rag["filter"], "rag.filter")
    except RequestError as err:
        raise as_openai_error(err) from err
    sampling = Sampling(
        max_new_tokens=max_tokens,
        do_sample=temperature > 0 if temperature is not None else cfg.generate.do_sample,
        temperature=temperature or cfg.generate.temperature,
        top_p=top_p,
        repetition_penalty=cfg.generate.repetition_penalty,
        no_repeat_ngram_size=cfg.generate.no_repeat_ngram_size,
        stop=stops,
    )
    return ChatQuery(
        prompt=messages,  # type: ignore[arg-type]  # Generator.format takes messages as well as text
        sampling=sampling,
        stream=stream,
        as_json=True,
        model=model,
        include_usage=include_usage,
        grounding=grounding,
    )


def _check_neutral_and_tools(payload: dict[str, Any]) -> None:
    """Fields that change nothing at their NEUTRAL values (others refused); `tools` (or the older `functions`)
    accepted and never called, a choice that forces a call refused; a response_format other than text refused."""
    for name, neutral in NEUTRAL.items():
        if name in payload and payload[name] not in neutral:
            raise OpenAIError(f"'{name}' = {quote(payload[name])} is not supported by this server", name)
    for tools, choice in TOOLS.items():
        if payload.get(tools) is not None and not isinstance(payload[tools], list):
            raise OpenAIError(f"'{tools}' must be a list, got {quote(payload[tools])}", tools)
        if payload.get(choice) not in TEXT_CHOICES:
            raise OpenAIError(f"'{choice}' = {quote(payload[choice])} demands a tool call; this server answers in text "
                              "only: send 'auto' or 'none', or leave it out", choice)  # fmt: skip
    if payload.get("response_format") not in (None, {"type": "text"}):
        raise OpenAIError("'response_format' other than text is not supported", "response_format")


def _streaming(stream: Any, options: Any) -> tuple[bool, bool]:
    """(stream, include_usage) from `stream` and `stream_options`."""
    stream = stream or False  # null, and any other falsy value as before, stream nothing
    if not isinstance(stream, bool):
        raise OpenAIError("'stream' must be true or false", "stream")
    options = options or {}
    if not isinstance(options, dict) or set(options) - {"include_usage"}:
        raise OpenAIError("'stream_options' may hold 'include_usage' only", "stream_options")
    return stream, bool(options.get("include_usage"))


def _max_tokens(payload: dict[str, Any], cfg: LLMConfig) -> int:
    """max_completion_tokens (or the older max_tokens): any positive integer, clamped to generate.max_new_tokens_limit
    as vLLM and OpenAI accept a value past what the model can write (finish_reason "length" says it was cut).
    The context left after the prompt clamps it further once the prompt is counted (llm_service.py)."""
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
    """`rag`'s shape; its filter is checked with the others the contracts share (decode_chat)."""
    if value in (None, False):
        return Grounding() if by_model else None
    if value is True:
        return Grounding()
    if not isinstance(value, dict) or set(value) - {"k", "filter"}:
        raise OpenAIError("'rag' must be true or an object with 'k' and 'filter'", "rag")
    k = value.get("k")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
        raise OpenAIError("'rag.k' must be a positive integer", "rag.k")
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
        self.delta = DeltaText(self.query.sampling.stop)

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
        return "length" if completion.completion_tokens >= self.query.sampling.max_new_tokens else "stop"

    def _head(self, kind: str) -> dict[str, Any]:
        return {"id": self.id, "object": kind, "created": self.created, "model": self.query.model}

    def _chunk(self, delta: dict[str, Any], finish: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        return _sse({**self._head("chat.completion.chunk"), "choices": [choice]})


def _sse(event: dict[str, Any]) -> str:
    return f"data: {json.dumps(event)}\n\n"
