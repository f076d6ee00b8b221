"""What both endpoints send back: one Reply per request, and one error shape.

Public names: Reply, TEXT, JSON, error_json, encode.
Every error, on every route of both endpoints, is OpenAI's error object, so the openai SDK, LangChain and
a plain HTTP client read the same thing: {"error": {"message", "type", "param", "code"}}, with the HTTP
status on the response. `param` names the request field that was wrong. No TorchServe imports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from ragserve.api.contracts import RequestError

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"


@dataclass(frozen=True)
class Reply:
    """One response (or, streamed, one piece): its body, content type, status and, for TorchServe's
    continuous batching, whether more follows (True), this is the last piece (False) or the whole
    response (None)."""

    body: str
    content_type: str
    status: int = 200
    more: bool | None = None


def error_json(err: RequestError, status: int | None = None) -> dict[str, Any]:
    """The error object of err (status: the HTTP status, when it differs from err's own)."""
    status = status or err.status
    kind = "invalid_request_error" if status < 500 else "server_error"
    code = getattr(err, "code", None) or ("not_found" if status == 404 else None)
    return {"error": {"message": str(err), "type": kind, "param": getattr(err, "param", err.field), "code": code}}


def encode(item: str | dict[str, Any] | RequestError, more: bool | None = None) -> Reply:
    """A finished item as its Reply: text as text/plain, a dict as JSON, an error as its error object."""
    if isinstance(item, RequestError):
        return Reply(json.dumps(error_json(item)), JSON, item.status, more)
    if isinstance(item, str):
        return Reply(item, TEXT, more=more)
    return Reply(json.dumps(item), JSON, more=more)
