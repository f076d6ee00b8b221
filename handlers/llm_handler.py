"""TorchServe adapter for the LLM endpoint: a prompt (e.g. the RAG endpoint's) or an OpenAI chat in, the answer out.

All work lives in the `ragserve` package shipped beside this file; TorchServe needs this file to
define exactly one class. Two modes: TorchServe's batches decode in turn (default), or, with
`handler.continuous_batching: true` and the frontend's `continuousBatching: true`, every handle() call
is one turn of an in-flight decode (ragserve.llm.turns): new requests join it, each request gets its news.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from http import HTTPStatus

import torch
from ts.handler_utils.timer import timed
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.torch_handler.base_handler import BaseHandler

from ragserve.api.llm_requests import LLMRequests
from ragserve.api.openai_api import ChatQuery, ChatReply, OpenAIError, error_json
from ragserve.api.requests import LLMQuery, RequestError, body_content_type, device_from_properties, error_body
from ragserve.config import LLMConfig
from ragserve.llm.generation import Completion, Generator
from ragserve.llm.inflight import InFlight
from ragserve.llm.turns import Reply, advance, answer_body, sampling_of

logger = logging.getLogger(__name__)
TEXT = "text/plain; charset=utf-8"


class LLMHandler(BaseHandler):
    """Generates a batch of prompts together; streamed requests send their text as it is decoded."""

    def initialize(self, context) -> None:  # BaseHandler.initialize expects a serialized model: not ours
        properties = context.system_properties
        self.cfg = LLMConfig.from_mapping(context.model_yaml_config.get("handler"), properties["model_dir"])
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.generator = Generator(self.cfg, device_from_properties(properties))
        # In-flight mode: the frontend's batchSize is how many requests decode at once; context.cache holds their jobs.
        self.inflight = InFlight(self.generator, properties["batch_size"]) if self.cfg.continuous_batching else None
        self.requests = LLMRequests(self.cfg, self.generator, context.model_name, self.inflight)
        context.cache = {}
        self.initialized = True

    @timed
    def preprocess(self, data: list[dict]) -> list:
        return [self._decode(i, request) for i, request in enumerate(data)]

    @timed
    def inference(self, data: list, *args, **kwargs) -> list:
        """Streamed and plain requests decode together; streamed ones send their text as it comes."""
        if self.inflight:
            return advance(self.inflight, self.context.cache, list(self.context.request_ids.values()), data)
        batch = [i for i, q in enumerate(data) if isinstance(q, LLMQuery)]
        chats = {i: ChatReply(data[i]) for i in batch if isinstance(data[i], ChatQuery)}
        for i in batch:
            if data[i].stream:
                self.context.set_response_content_type(i, chats[i].content_type if i in chats else TEXT)
        completions = self.generator.generate(
            [data[i].prompt for i in batch], [sampling_of(data[i]) for i in batch], self._sender(data, batch, chats)
        )
        done = dict(zip(batch, completions, strict=True))
        return [(q, done.get(i), chats.get(i)) for i, q in enumerate(data)]

    @timed
    def postprocess(self, data: list) -> list:
        if self.inflight:  # ts_stream_next per request: whether more of its answer follows
            self.context.stopping_criteria = [lambda _, more=r.more: None if more is None else not more for r in data]
            return [self._send(i, reply) for i, reply in enumerate(data)]
        return [self._send(i, _final(*item)) for i, item in enumerate(data)]

    def _decode(self, idx: int, request: dict):
        """A new request's query, finished reply or RequestError; None for a running in-flight request."""
        if self.inflight and self.context.request_ids[idx] in self.context.cache:
            return None
        header = lambda name: self.context.get_request_header(idx, name)  # noqa: E731
        try:
            return self.requests.decode(request, body_content_type(request, header), header("url_path"),
                                        header("Authorization") or header("authorization"))  # fmt: skip
        except RequestError as err:
            return err

    def _send(self, idx: int, reply: Reply) -> str:
        self.context.set_response_status(reply.status, HTTPStatus(reply.status).phrase, idx)
        self.context.set_response_content_type(idx, reply.content_type)
        return reply.body

    def _sender(self, data: list, batch: list[int], chats: dict[int, ChatReply]) -> Callable[[int, str], None] | None:
        """on_piece for Generator.generate: a streamed request's piece (or chat events) as an intermediate response."""
        streamed = {j: i for j, i in enumerate(batch) if data[i].stream}
        if not streamed:
            return None

        def send(j: int, piece: str) -> None:
            if j in streamed:
                i = streamed[j]
                body = chats[i].piece(piece) if i in chats else piece
                if body:
                    send_intermediate_predict_response(
                        {i: body}, {i: self.context.request_ids[i]}, "", 200, self.context
                    )

        return send


def _final(query, completion: Completion | None, chat: ChatReply | None) -> Reply:
    """The last (or only) response of a request in the batch path."""
    if isinstance(query, RequestError):
        body = error_json(query) if isinstance(query, OpenAIError) else error_body(query)
        return Reply(json.dumps(body), "application/json", query.status)
    if isinstance(query, dict):  # a finished reply (GET v1/models)
        return Reply(json.dumps(query), "application/json")
    if chat is not None:
        return Reply(chat.end(completion), chat.content_type)
    if query.stream:  # its text has been sent already
        return Reply("", TEXT)
    return Reply(*answer_body(completion, query.as_json))
