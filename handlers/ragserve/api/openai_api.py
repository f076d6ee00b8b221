"""OpenAI-compatible routes, what both endpoints share: the route of a request, OpenAI's error shape, the
checks every v1 body goes through, and GET v1/models.

Public names: ROUTES, IGNORED, OpenAIError, route_of, v1_body, body_object, check_known, requested_model,
as_openai_error, models_body.
TorchServe hands a request to /predictions/<model>/<version>/v1/... to the handler with the rest of the
path in the `url_path` header (TorchServe's own vllm_handler routes the same way); route_of reads it.
The routes themselves: api/openai_rag.py (v1/embeddings, v1/retrieval) and api/openai_chat.py
(v1/chat/completions). A parameter the model cannot honour is refused with HTTP 400 in OpenAI's error shape,
never ignored. No TorchServe imports.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from ragserve.api.contracts import RequestError, quote

ROUTES = ("v1/embeddings", "v1/retrieval", "v1/chat/completions", "v1/models")
IGNORED = {"user", "metadata"}  # bookkeeping fields with no effect on the answer


class OpenAIError(RequestError):
    """A request error reported in OpenAI's shape: {"error": {"message", "type", "param", "code"}}."""

    def __init__(self, message: str, param: str | None = None, status: int = 400, code: str | None = None) -> None:
        super().__init__(message, param or "body", status)
        self.param = param
        self.code = code


def route_of(url_path: str | None) -> str | None:
    """The OpenAI route of a request (None: the endpoint's own contract); an unknown one is a 404."""
    if not url_path:
        return None
    route = url_path.strip("/")
    if route not in ROUTES:
        raise OpenAIError(f"unknown route {quote(route)}; this server has {', '.join(ROUTES)}", None, 404)
    return route


def v1_body(payload: Any, allowed: set[str], models: Sequence[str]) -> tuple[dict[str, Any], str]:
    """What every v1 body goes through first: a JSON object (body_object) of known fields (check_known) naming a
    model served here (requested_model); returns it and that model."""
    payload = body_object(payload)
    check_known(payload, allowed)
    return payload, requested_model(payload, models)


def body_object(payload: Any) -> dict[str, Any]:
    """A v1 body is a JSON object."""
    if not isinstance(payload, dict):
        raise OpenAIError("the body must be a JSON object (send Content-Type: application/json)")
    return payload


def check_known(payload: dict[str, Any], allowed: set[str]) -> None:
    """A field this server does not know is refused, naming it (OpenAI's bookkeeping fields pass)."""
    unknown = sorted(set(payload) - allowed - IGNORED)
    if unknown:
        raise OpenAIError(f"unsupported parameter {quote(unknown[0])}", unknown[0])


def requested_model(payload: dict[str, Any], models: Sequence[str]) -> str:
    """The request's `model`, one this endpoint serves (404 model_not_found otherwise, as OpenAI answers)."""
    model = payload.get("model")
    if not isinstance(model, str):
        raise OpenAIError("'model' is required: one of " + ", ".join(models), "model")
    if model not in models:
        raise OpenAIError(f"the model {quote(model)} does not exist here; use one of {list(models)}", "model", 404,
                          "model_not_found")  # fmt: skip
    return model


def as_openai_error(err: RequestError) -> OpenAIError:
    """A RequestError of the endpoints' own validators, re-raised in OpenAI's shape."""
    return OpenAIError(str(err), err.field, err.status)


def models_body(models: Sequence[str]) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [{"id": name, "object": "model", "created": 0, "owned_by": "ragserve"} for name in models],
    }
