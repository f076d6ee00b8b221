"""TorchServe adapter for the RAG endpoint: request bytes in, Llama prompt (or JSON) out.

All work lives in the `ragserve` package shipped beside this file in the model archive;
TorchServe needs this file to define exactly one class.
"""

from __future__ import annotations

import json
import logging
import os
from http import HTTPStatus
from pathlib import Path

import torch
from ts.handler_utils.timer import timed
from ts.torch_handler.base_handler import BaseHandler

from ragserve.api.openai_api import EmbeddingsQuery, OpenAIError, RetrievalQuery, decode_rag_request, error_json
from ragserve.api.requests import (
    Query,
    RequestError,
    body_content_type,
    device_from_properties,
    error_body,
    worker_threads,
)
from ragserve.config import Config
from ragserve.retrieval.pipeline import RAGPipeline

QUERIES = (Query, RetrievalQuery, EmbeddingsQuery)

logger = logging.getLogger(__name__)


class RAGHandler(BaseHandler):
    """Builds the pipeline once per worker; answers a batch with one embed and one search."""

    def initialize(self, context) -> None:  # BaseHandler.initialize expects a serialized model: not ours
        properties = context.system_properties
        self.cfg = Config.from_mapping(context.model_yaml_config.get("handler"), properties["model_dir"])
        threads = worker_threads(context.model_yaml_config, os.cpu_count() or 1, dict(os.environ))
        torch.set_num_threads(threads)  # ONNX Runtime takes the same number (Encoder)
        logger.info("RAG config (%d threads): %s", threads, json.dumps(self.cfg.to_dict()))
        self.pipeline = RAGPipeline.from_config(self.cfg, device_from_properties(properties))
        self.models = (context.model_name, Path(self.cfg.embedding.model_path).name)  # the v1 routes' model ids
        self.initialized = True

    @timed
    def preprocess(self, data: list[dict]) -> list:
        return [self._decode(i, request) for i, request in enumerate(data)]

    @timed
    def inference(self, data: list, *args, **kwargs) -> list:
        valid = [item for item in data if isinstance(item, QUERIES)]  # not an error or a finished reply
        answers = iter(self.pipeline.answer(valid))
        times = self.pipeline.last_times
        self.context.metrics.add_time("RAGEmbedTime", times.embed_ms, None, "ms")
        self.context.metrics.add_time("RAGSearchTime", times.search_ms, None, "ms")
        if self.pipeline.reranker:
            self.context.metrics.add_time("RAGRerankTime", times.rerank_ms, None, "ms")
        return [next(answers) if isinstance(item, QUERIES) else item for item in data]

    @timed
    def postprocess(self, data: list) -> list:
        return [self._encode(i, item) for i, item in enumerate(data)]

    def _decode(self, idx: int, request: dict):
        """A query, a finished reply (GET v1/models) or the RequestError to answer with."""
        header = lambda name: self.context.get_request_header(idx, name)  # noqa: E731
        content_type = body_content_type(request, header)
        try:
            return decode_rag_request(request, content_type, header("url_path"), self.cfg, self.models)
        except RequestError as err:
            return err

    def _encode(self, idx: int, item) -> str:
        if isinstance(item, RequestError):
            self.context.set_response_status(item.status, HTTPStatus(item.status).phrase, idx)
            item = error_json(item) if isinstance(item, OpenAIError) else error_body(item)
        is_json = not isinstance(item, str)
        self.context.set_response_content_type(idx, "application/json" if is_json else "text/plain; charset=utf-8")
        return json.dumps(item) if is_json else item
