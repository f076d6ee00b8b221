"""TorchServe adapter for the RAG endpoint: request bytes in, Llama prompt (or JSON) out.

All work lives in the `ragserve` package shipped beside this file in the model archive
(ragserve.retrieval.pipeline.RAGPipeline); TorchServe needs this file to define exactly one class.
"""

from __future__ import annotations

import json
import logging
from http import HTTPStatus
from pathlib import Path

from ts.handler_utils.timer import timed
from ts.torch_handler.base_handler import BaseHandler

from ragserve.api.contracts import RequestError, body_content_type
from ragserve.api.openai_rag import decode_rag_request, rag_reply
from ragserve.api.replies import Reply, encode
from ragserve.config import Config
from ragserve.retrieval.pipeline import RAGPipeline
from ragserve.retrieval.queries import EmbeddingsQuery, Query, RetrievalQuery
from ragserve.runtime import apply_runtime

QUERIES = (Query, RetrievalQuery, EmbeddingsQuery)

logger = logging.getLogger(__name__)


class RAGHandler(BaseHandler):
    """Builds the pipeline once per worker; answers a batch with one embed and one search."""

    def initialize(self, context) -> None:  # BaseHandler.initialize expects a serialized model: not ours
        properties = context.system_properties
        self.cfg = Config.from_mapping(context.model_yaml_config.get("handler"), properties["model_dir"])
        logger.info("RAG config: %s", json.dumps(self.cfg.to_dict()))
        device = apply_runtime(self.cfg.runtime, context.model_yaml_config, properties)
        self.pipeline = RAGPipeline.from_config(self.cfg, device, export_missing=False)  # exports are build work
        self.models = (context.model_name, Path(self.cfg.embedding.model_path).name)  # the v1 routes' model ids
        self.initialized = True

    @timed
    def preprocess(self, data: list[dict]) -> list:
        """A query, a finished reply (GET v1/models) or the RequestError to answer with, per request."""
        return [self._decode(i, request) for i, request in enumerate(data)]

    @timed
    def inference(self, data: list, *args, **kwargs) -> list:
        queries = [item for item in data if isinstance(item, QUERIES)]
        answers = self.pipeline.answer(queries)
        for name, ms in answers.times.metrics().items():  # RAGEmbedTime, RAGSearchTime (and RAGRerankTime)
            self.context.metrics.add_time(name, ms, None, "ms")
        replies = iter([rag_reply(query, result) for query, result in zip(queries, answers.results, strict=True)])
        return [next(replies) if isinstance(item, QUERIES) else item for item in data]

    @timed
    def postprocess(self, data: list) -> list:
        return [self._respond(i, encode(item)) for i, item in enumerate(data)]

    def _decode(self, idx: int, request: dict):
        header = lambda name: self.context.get_request_header(idx, name)  # noqa: E731
        try:
            return decode_rag_request(request, body_content_type(request, header), header("url_path"), self.cfg,
                                      self.models, self._count_tokens)  # fmt: skip
        except RequestError as err:
            return err

    def _count_tokens(self, texts: list[str]) -> list[int]:
        return self.pipeline.encoder.count_tokens(texts, truncate=False)

    def _respond(self, idx: int, reply: Reply) -> str:
        self.context.set_response_status(reply.status, HTTPStatus(reply.status).phrase, idx)
        self.context.set_response_content_type(idx, reply.content_type)
        return reply.body
