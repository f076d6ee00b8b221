"""TorchServe adapter for the LLM endpoint: a prompt (e.g. the RAG endpoint's) in, the answer out.

All work lives in the `ragserve` package shipped beside this file; TorchServe needs this file to
define exactly one class.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Callable
from http import HTTPStatus

import torch
from ts.handler_utils.timer import timed
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.torch_handler.base_handler import BaseHandler

from ragserve.config import LLMConfig
from ragserve.generation import Completion, Generator, Sampling
from ragserve.serving import (
    LLMQuery,
    RequestError,
    body_content_type,
    check_prompt_tokens,
    decode_llm_request,
    device_from_properties,
    error_body,
)

logger = logging.getLogger(__name__)


class LLMHandler(BaseHandler):
    """Generates a batch of prompts together; streamed requests send their text as it is decoded."""

    def initialize(self, context) -> None:  # BaseHandler.initialize expects a serialized model: not ours
        properties = context.system_properties
        self.cfg = LLMConfig.from_mapping(context.model_yaml_config.get("handler"), properties["model_dir"])
        if self.cfg.threads:
            torch.set_num_threads(self.cfg.threads)
        self.generator = Generator(self.cfg, device_from_properties(properties))
        self.initialized = True

    @timed
    def preprocess(self, data: list[dict]) -> list:
        return [self._decode(i, request) for i, request in enumerate(data)]

    @timed
    def inference(self, data: list, *args, **kwargs) -> list:
        """Streamed and plain requests decode together; streamed ones send their text as it comes."""
        batch = [i for i, q in enumerate(data) if isinstance(q, LLMQuery)]
        for i in batch:
            if data[i].stream:
                self.context.set_response_content_type(i, "text/plain; charset=utf-8")
        completions = self.generator.generate(
            [data[i].prompt for i in batch], [_sampling(data[i]) for i in batch], self._sender(data, batch)
        )
        done = dict(zip(batch, completions, strict=True))
        return [(q, "" if isinstance(q, LLMQuery) and q.stream else done.get(i)) for i, q in enumerate(data)]

    @timed
    def postprocess(self, data: list) -> list:
        return [self._encode(i, query, result) for i, (query, result) in enumerate(data)]

    def _decode(self, idx: int, request: dict):
        content_type = body_content_type(request, lambda name: self.context.get_request_header(idx, name))
        try:
            query = decode_llm_request(request, content_type, self.cfg)
            check_prompt_tokens(self.generator.count_tokens(query.prompt), self.generator.max_input_tokens)
            return query
        except RequestError as err:
            return err

    def _sender(self, data: list, batch: list[int]) -> Callable[[int, str], None] | None:
        """on_piece for Generator.generate: a streamed request's piece goes out as an intermediate response."""
        streamed = {j: i for j, i in enumerate(batch) if data[i].stream}
        if not streamed:
            return None

        def send(j: int, piece: str) -> None:
            if j in streamed:
                i = streamed[j]
                send_intermediate_predict_response({i: piece}, {i: self.context.request_ids[i]}, "", 200, self.context)

        return send

    def _encode(self, idx: int, query, result: Completion | str | None) -> str:
        """The final response: an error's JSON, "" after a stream, the answer as text or JSON."""
        if isinstance(query, RequestError):
            self.context.set_response_status(query.status, HTTPStatus(query.status).phrase, idx)
            self.context.set_response_content_type(idx, "application/json")
            return json.dumps(error_body(query))
        if isinstance(result, str) or not query.as_json:  # streamed (already sent), or plain text
            self.context.set_response_content_type(idx, "text/plain; charset=utf-8")
            return result if isinstance(result, str) else result.text
        self.context.set_response_content_type(idx, "application/json")
        return json.dumps(
            {
                "answer": result.text,
                "prompt_tokens": result.prompt_tokens,
                "completion_tokens": result.completion_tokens,
            }
        )


def _sampling(query: LLMQuery) -> Sampling:
    """The query's generation settings (LLMQuery holds every Sampling field under the same name)."""
    return Sampling(**{f.name: getattr(query, f.name) for f in dataclasses.fields(Sampling)})
