"""Every kind of LLM endpoint request turned into what the decode runs, or into its finished reply.

Public names: LLMRoutes, fit_to_context.
Routes: the endpoint's own contract (text, or JSON {"prompt", ...}), OpenAI's v1/chat/completions
(openai_chat.py; grounded on retrieval through the RAG endpoint when asked: ragclient.py) and GET
v1/models. Every prompt is counted in tokens after the chat template (413 over the limit), and its
max_new_tokens clamped to the context it leaves (fit_to_context); with the in-flight decode, a setting it
cannot honour is refused (turns.admit). Errors of a v1 route come in OpenAI's shape. No TorchServe imports.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ragserve.api.contracts import LLMQuery, RequestError, check_prompt_tokens, decode_llm_request, read_payload
from ragserve.api.openai_api import OpenAIError, models_body, route_of
from ragserve.api.openai_chat import ChatQuery, decode_chat
from ragserve.api.ragclient import RAGClient
from ragserve.api.turns import admit
from ragserve.config import LLMConfig
from ragserve.llm.generation import Generator
from ragserve.llm.inflight import InFlight


class LLMRoutes:
    def __init__(self, cfg: LLMConfig, generator: Generator, name: str, inflight: InFlight | None = None) -> None:
        self.cfg = cfg
        self.generator = generator
        self.inflight = inflight
        self.rag = RAGClient(cfg.rag.url, cfg.rag.key_file, cfg.rag.timeout_s) if cfg.rag.url else None
        self.rag_model = f"{name}-rag" if self.rag else None
        self.models = [name, self.rag_model] if self.rag_model else [name]

    def decode(
        self, request: dict[str, Any], content_type: str | None, url_path: str | None, authorization: str | None
    ) -> LLMQuery | dict[str, Any]:
        """The query to decode, or a finished reply (GET v1/models); RequestError for a bad request."""
        route = route_of(url_path)
        try:
            if route is None:
                query = decode_llm_request(request, content_type, self.cfg)
            elif route == "v1/models":
                return models_body(self.models)
            elif route == "v1/chat/completions":
                query = self._chat(read_payload(request, content_type, "messages"), authorization)
            else:
                raise OpenAIError(f"{route} is served by the RAG endpoint, not this one", None, 404)
            prompt_tokens = self.generator.count_tokens(query.prompt)
            check_prompt_tokens(prompt_tokens, self.generator.max_input_tokens)
            query = fit_to_context(query, prompt_tokens, self.generator.context_tokens)
            return admit(query, self.inflight) if self.inflight else query
        except RequestError as err:
            if route is None or isinstance(err, OpenAIError):
                raise
            raise OpenAIError(str(err), err.field, err.status) from err

    def _chat(self, payload: Any, authorization: str | None) -> ChatQuery:
        query = decode_chat(payload, self.cfg, self.models, self.rag_model)
        if query.grounding is None:
            return query
        if self.rag is None:
            raise OpenAIError("chat grounded on retrieval needs handler.rag.url (the RAG endpoint)", "rag")
        messages = list(query.prompt)
        last = max(i for i, message in enumerate(messages) if message["role"] == "user")  # the question
        prompt, sources = self.rag.ask(messages[last]["content"], query.grounding, authorization)
        messages[last] = {"role": "user", "content": prompt}
        return dataclasses.replace(query, prompt=tuple(messages), sources=tuple(sources))


def fit_to_context(query: LLMQuery, prompt_tokens: int, context_tokens: int) -> LLMQuery:
    """The query with max_new_tokens cut to the context the prompt leaves (finish_reason "length" then says so);
    RequestError (413) when the prompt leaves no room for one new token."""
    room = context_tokens - prompt_tokens
    if room < 1:
        raise RequestError(f"the prompt has {prompt_tokens} tokens and fills the model's context of {context_tokens}",
                           "prompt", status=413)  # fmt: skip
    return query if query.max_new_tokens <= room else dataclasses.replace(query, max_new_tokens=room)
