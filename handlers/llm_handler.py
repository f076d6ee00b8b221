"""TorchServe adapter for the LLM endpoint: a prompt (e.g. the RAG endpoint's) in, the answer out.

All work lives in the `ragserve` package shipped beside this file; TorchServe needs this file to
define exactly one class.
"""

from __future__ import annotations

import json
import logging
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
        batch = [i for i, q in enumerate(data) if isinstance(q, LLMQuery) and not q.stream]
        completions = self.generator.generate([data[i].prompt for i in batch], [_sampling(data[i]) for i in batch])
        done = dict(zip(batch, completions, strict=True))
        streamed = {i: self._stream(i, q) for i, q in enumerate(data) if isinstance(q, LLMQuery) and q.stream}
        return [(q, done.get(i) or streamed.get(i)) for i, q in enumerate(data)]

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

    def _stream(self, idx: int, query: LLMQuery) -> str:
        """Send each decoded piece as an intermediate response; the final response is empty."""
        self.context.set_response_content_type(idx, "text/plain; charset=utf-8")
        request_id = {idx: self.context.request_ids[idx]}
        for piece in self.generator.stream(query.prompt, _sampling(query)):
            send_intermediate_predict_response({idx: piece}, request_id, "", 200, self.context)
        return ""

    def _encode(self, idx: int, query, result: Completion | str | None) -> str:
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
    return Sampling(query.max_new_tokens, query.do_sample, query.temperature, query.top_p)
