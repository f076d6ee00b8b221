"""Every kind of LLM endpoint request turned into its query, or into its finished reply: wire decoding only.

Public names: LLMRoutes.
Routes: the endpoint's own contract (text, or JSON {"prompt", ...}), OpenAI's v1/chat/completions
(openai_chat.py) and GET v1/models. Errors of a v1 route come in OpenAI's shape. What a query needs
next (grounding through the RAG endpoint, its tokens counted against the context, admission to the
in-flight decode) is the service's (llm_service.py). No TorchServe imports.
"""

from __future__ import annotations

from typing import Any

from ragserve.api.contracts import LLMQuery, decode_llm_request, read_payload
from ragserve.api.openai_api import OpenAIError, models_body, route_of
from ragserve.api.openai_chat import decode_chat
from ragserve.config import LLMConfig


class LLMRoutes:
    """The routes of an LLM endpoint named `name`; `<name>-rag` too when it grounds chats (handler.rag.url)."""

    def __init__(self, cfg: LLMConfig, name: str) -> None:
        self.cfg = cfg
        self.rag_model = f"{name}-rag" if cfg.rag.url else None
        self.models = [name, self.rag_model] if self.rag_model else [name]

    def decode(self, request: dict[str, Any], content_type: str | None, url_path: str | None) -> LLMQuery | dict:
        """The query, or a finished reply (GET v1/models); RequestError when bad (LLMService puts a v1 route's in
        OpenAI's shape, with the refusals that come after decoding)."""
        route = route_of(url_path)
        if route is None:
            return decode_llm_request(request, content_type, self.cfg)
        if route == "v1/models":
            return models_body(self.models)
        if route != "v1/chat/completions":
            raise OpenAIError(f"{route} is served by the RAG endpoint, not this one", None, 404)
        payload = read_payload(request, content_type, "messages")
        return decode_chat(payload, self.cfg, self.models, self.rag_model)
