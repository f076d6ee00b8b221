"""The LLM endpoint's requests in, one Reply each out, over the model engine of llm/ (Generator, InFlight).

Public names: LLMService, fit_to_context.
Two modes behind one interface. Batch (default): the requests of one TorchServe batch decode together,
streamed ones sending pieces as they come. In-flight (`decode.continuous_batching: true`, with the
frontend's `continuousBatching: true`): each call is one turn of transformers' continuous batching
(api/turns.py); new requests join the running decode, every request gets its news. A request goes one
way: decoded from the wire (api/llm_routes.py), grounded on retrieval when asked (the RAG endpoint,
api/ragclient.py), counted in tokens and fitted to the context, admitted to the in-flight decode, run;
replies and errors are api/replies.py. It lives in api/, above llm/,
because it speaks in requests and replies; llm/ never imports api/ (tests/test_layout.py). No TorchServe imports.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ragserve.api.contracts import LLMQuery, RequestError, body_content_type, check_prompt_tokens
from ragserve.api.llm_routes import LLMRoutes
from ragserve.api.openai_api import OpenAIError, as_openai_error
from ragserve.api.openai_chat import ChatQuery, ChatReply
from ragserve.api.ragclient import RAGClient
from ragserve.api.replies import TEXT, Reply, encode
from ragserve.api.turns import Job, admit, advance, answer_body
from ragserve.config import LLMConfig
from ragserve.llm.generation import Completion, Generator
from ragserve.llm.inflight import InFlight

Header = Callable[[str], str | None]  # a request header by name
Send = Callable[[int, Reply], None]  # an intermediate response (a streamed piece) for request i


class LLMService:
    """Owns the Generator (and, in-flight, the running decode and its jobs); built once per worker."""

    def __init__(
        self, cfg: LLMConfig, name: str, device: str = "cpu", max_requests: int = 1, generator: Generator | None = None
    ) -> None:
        self.cfg = cfg
        self.generator = generator or Generator(cfg, device)
        # In-flight: the frontend's batchSize is how many requests decode at once.
        self.inflight = InFlight(self.generator, max_requests) if cfg.decode.continuous_batching else None
        self.routes = LLMRoutes(cfg, name)
        self.rag = RAGClient(cfg.rag.url, cfg.rag.key_file, cfg.rag.timeout_s) if cfg.rag.url else None
        self.jobs: dict[str, Job] = {}  # in-flight: the running requests, by TorchServe request id

    def decode(self, request_id: str, request: dict[str, Any], header: Header) -> Any:
        """A new request's query, finished reply (dict) or RequestError; None for a running in-flight one."""
        if self.inflight and request_id in self.jobs:
            return None
        try:
            authorization = header("Authorization") or header("authorization")
            return self.query(request, body_content_type(request, header), header("url_path"), authorization)
        except RequestError as err:
            return err

    def query(
        self, request: dict[str, Any], content_type: str | None, url_path: str | None, authorization: str | None
    ) -> LLMQuery | dict[str, Any]:
        """What the decode runs for one request: its query grounded (the RAG call), counted in tokens after the chat
        template (413 over the limit), max_new_tokens fitted to the context left, admitted to the in-flight
        decode; or a finished reply (GET v1/models). RequestError when it cannot run: in OpenAI's shape on a v1
        route, whichever step refused it."""
        try:
            query = self.routes.decode(request, content_type, url_path)
            if not isinstance(query, LLMQuery):
                return query
            if isinstance(query, ChatQuery) and query.grounding is not None:
                query = self._ground(query, authorization)
            prompt_tokens = self.generator.count_tokens(query.prompt)
            check_prompt_tokens(prompt_tokens, self.generator.max_input_tokens)
            query = fit_to_context(query, prompt_tokens, self.generator.context_tokens)
            return admit(query, self.inflight) if self.inflight else query
        except RequestError as err:
            if isinstance(err, OpenAIError) or not url_path:  # the endpoint's own contract keeps its own shape
                raise
            raise as_openai_error(err) from err

    def _ground(self, query: ChatQuery, authorization: str | None) -> ChatQuery:
        """The chat with its last user message replaced by the RAG endpoint's prompt for it, and the sources."""
        if self.rag is None:
            raise OpenAIError("chat grounded on retrieval needs handler.rag.url (the RAG endpoint)", "rag")
        messages = list(query.prompt)
        last = max(i for i, message in enumerate(messages) if message["role"] == "user")  # the question
        prompt, sources = self.rag.ask(messages[last]["content"], query.grounding, authorization)
        messages[last] = {"role": "user", "content": prompt}
        return dataclasses.replace(query, prompt=tuple(messages), sources=tuple(sources))

    def run(self, request_ids: list[str], items: list, send: Send) -> list[Reply]:
        """One Reply per item: the whole answer (batch), or this turn's news (in-flight)."""
        if self.inflight:
            return advance(self.inflight, self.jobs, request_ids, items)
        batch = [i for i, q in enumerate(items) if isinstance(q, LLMQuery)]
        chats = {i: ChatReply(items[i]) for i in batch if isinstance(items[i], ChatQuery)}
        prompts, samplings = [items[i].prompt for i in batch], [items[i].sampling for i in batch]
        completions = self.generator.generate(prompts, samplings, self._sender(items, batch, chats, send))
        done = dict(zip(batch, completions, strict=True))
        return [_final(q, done.get(i), chats.get(i)) for i, q in enumerate(items)]

    def stop(self) -> None:
        if self.inflight:
            self.inflight.stop()

    @staticmethod
    def _sender(items: list, batch: list[int], chats: dict[int, ChatReply], send: Send) -> Callable | None:
        """on_piece for Generator.generate: a streamed request's piece (or chat events) as an intermediate Reply."""
        streamed = {j: i for j, i in enumerate(batch) if items[i].stream}
        if not streamed:
            return None

        def on_piece(j: int, piece: str) -> None:
            if j in streamed:
                i = streamed[j]
                body = chats[i].piece(piece) if i in chats else piece
                if body:
                    send(i, Reply(body, chats[i].content_type if i in chats else TEXT))

        return on_piece


def _final(query: Any, completion: Completion | None, chat: ChatReply | None) -> Reply:
    """The last (or only) response of a request in the batch path."""
    if not isinstance(query, LLMQuery):  # a RequestError or a finished reply (GET v1/models)
        return encode(query)
    if chat is not None:
        return Reply(chat.end(completion), chat.content_type)
    if query.stream:  # its text has been sent already
        return Reply("", TEXT)
    return Reply(*answer_body(completion, query.as_json))


def fit_to_context(query: LLMQuery, prompt_tokens: int, context_tokens: int) -> LLMQuery:
    """The query with max_new_tokens cut to the context the prompt leaves (finish_reason "length" then says so);
    RequestError (413) when the prompt leaves no room for one new token."""
    room = context_tokens - prompt_tokens
    if room < 1:
        raise RequestError(f"the prompt has {prompt_tokens} tokens and fills the model's context of {context_tokens}",
                           "prompt", status=413)  # fmt: skip
    if query.sampling.max_new_tokens <= room:
        return query
    return dataclasses.replace(query, sampling=dataclasses.replace(query.sampling, max_new_tokens=room))
