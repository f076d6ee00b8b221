"""The LLM endpoint's requests in, one Reply each out, over the model engine of llm/ (Generator, InFlight).

Public names: LLMService.
Two modes behind one interface. Batch (default): the requests of one TorchServe batch decode together,
streamed ones sending pieces as they come. In-flight (`decode.continuous_batching: true`, with the
frontend's `continuousBatching: true`): each call is one turn of transformers' continuous batching
(api/turns.py); new requests join the running decode, every request gets its news. Request decoding
for every route is api/llm_routes.py; replies and errors are api/replies.py. It lives in api/, above llm/,
because it speaks in requests and replies; llm/ never imports api/ (tests/test_layout.py). No TorchServe imports.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from ragserve.api.contracts import LLMQuery, RequestError, body_content_type
from ragserve.api.llm_routes import LLMRoutes
from ragserve.api.openai_chat import ChatQuery, ChatReply
from ragserve.api.replies import TEXT, Reply, encode
from ragserve.api.turns import Job, advance, answer_body, sampling_of
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
        self.requests = LLMRoutes(cfg, self.generator, name, self.inflight)
        self.jobs: dict[str, Job] = {}  # in-flight: the running requests, by TorchServe request id

    def decode(self, request_id: str, request: dict[str, Any], header: Header) -> Any:
        """A new request's query, finished reply (dict) or RequestError; None for a running in-flight one."""
        if self.inflight and request_id in self.jobs:
            return None
        try:
            authorization = header("Authorization") or header("authorization")
            return self.requests.decode(request, body_content_type(request, header), header("url_path"), authorization)
        except RequestError as err:
            return err

    def run(self, request_ids: list[str], items: list, send: Send) -> list[Reply]:
        """One Reply per item: the whole answer (batch), or this turn's news (in-flight)."""
        if self.inflight:
            return advance(self.inflight, self.jobs, request_ids, items)
        batch = [i for i, q in enumerate(items) if isinstance(q, LLMQuery)]
        chats = {i: ChatReply(items[i]) for i in batch if isinstance(items[i], ChatQuery)}
        prompts, samplings = [items[i].prompt for i in batch], [sampling_of(items[i]) for i in batch]
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
