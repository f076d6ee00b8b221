"""TorchServe adapter for the LLM endpoint: a prompt (e.g. the RAG endpoint's) or an OpenAI chat in, the answer out.

All work lives in the `ragserve` package shipped beside this file (ragserve.api.llm_service.LLMService, batch or
in-flight decoding); TorchServe needs this file to define exactly one class.
"""

from __future__ import annotations

import logging
from http import HTTPStatus

from ts.handler_utils.timer import timed
from ts.handler_utils.utils import send_intermediate_predict_response
from ts.torch_handler.base_handler import BaseHandler

from ragserve.api.llm_service import LLMService
from ragserve.api.replies import Reply
from ragserve.config import LLMConfig
from ragserve.runtime import apply_runtime

logger = logging.getLogger(__name__)


class LLMHandler(BaseHandler):
    """Decodes a batch of prompts together (or one in-flight turn); streamed requests get pieces as they come."""

    def initialize(self, context) -> None:  # BaseHandler.initialize expects a serialized model: not ours
        properties = context.system_properties
        cfg = LLMConfig.from_mapping(context.model_yaml_config.get("handler"), properties["model_dir"])
        device = apply_runtime(cfg.runtime, context.model_yaml_config, properties)
        # In-flight mode: the frontend's batchSize is how many requests decode at once.
        self.service = LLMService(cfg, context.model_name, device, properties["batch_size"])
        self.initialized = True

    @timed
    def preprocess(self, data: list[dict]) -> list:
        ids = self.context.request_ids
        return [self.service.decode(ids[i], request, self._header(i)) for i, request in enumerate(data)]

    @timed
    def inference(self, data: list, *args, **kwargs) -> list[Reply]:
        return self.service.run(list(self.context.request_ids.values()), data, self._send_piece)

    @timed
    def postprocess(self, data: list[Reply]) -> list[str]:
        # ts_stream_next per request in continuous batching: whether more of its answer follows.
        stops = [lambda _, more=reply.more: None if more is None else not more for reply in data]
        self.context.stopping_criteria = stops if any(reply.more is not None for reply in data) else None
        return [self._respond(i, reply) for i, reply in enumerate(data)]

    def _header(self, idx: int):
        return lambda name: self.context.get_request_header(idx, name)

    def _send_piece(self, idx: int, reply: Reply) -> None:
        self.context.set_response_content_type(idx, reply.content_type)
        send_intermediate_predict_response(
            {idx: reply.body}, {idx: self.context.request_ids[idx]}, "", 200, self.context
        )

    def _respond(self, idx: int, reply: Reply) -> str:
        self.context.set_response_status(reply.status, HTTPStatus(reply.status).phrase, idx)
        self.context.set_response_content_type(idx, reply.content_type)
        return reply.body
