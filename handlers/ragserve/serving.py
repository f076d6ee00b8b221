"""Request decoding and validation for the RAG endpoint; pure functions on plain dicts.

Public names: Query, RequestError, decode_request, error_body, device_from_properties.
A request is a TorchServe input dict (`body`/`data` as str, bytes or parsed JSON, or form fields)
plus its Content-Type. Text in -> Query(as_json=False); a JSON object in -> Query(as_json=True).
Anything else raises RequestError, which names the field and becomes an HTTP 400 JSON body.
No TorchServe imports.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .config import RetrievalConfig

JSON_FIELDS = {"question", "k"}


class RequestError(ValueError):
    """A bad request; `field` names the offending request field."""

    def __init__(self, message: str, field: str = "body", status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


@dataclass(frozen=True)
class Query:
    question: str
    k: int
    as_json: bool  # reply with {"prompt", "sources"} instead of the bare prompt text


def decode_request(request: dict[str, Any], content_type: str | None, cfg: RetrievalConfig) -> Query:
    """Turn one TorchServe request into a validated Query, or raise RequestError."""
    payload = request.get("data", request.get("body"))
    if payload is None:
        return _query(_form_question(request), cfg.top_k, False, cfg)
    is_json = "json" in (content_type or "").lower()
    if isinstance(payload, (bytes, bytearray)):
        payload = _utf8(bytes(payload))
        if is_json:
            payload = _parse_json(payload)
    if isinstance(payload, str):
        return _query(payload, cfg.top_k, False, cfg)
    return _json_query(payload, cfg)


def error_body(err: RequestError) -> dict[str, Any]:
    return {"error": str(err), "field": err.field, "status": err.status}


def device_from_properties(properties: dict[str, Any]) -> str:
    """TorchServe's gpu_id (absent or None on CPU hosts) -> a torch device string."""
    import torch

    gpu_id = properties.get("gpu_id")
    if gpu_id is not None and torch.cuda.is_available():
        return f"cuda:{gpu_id}"
    return "cpu"


def _json_query(payload: Any, cfg: RetrievalConfig) -> Query:
    if not isinstance(payload, dict):
        raise RequestError(f"JSON body must be an object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - JSON_FIELDS)
    if unknown:
        raise RequestError(f"unknown field(s) {unknown}; allowed: {sorted(JSON_FIELDS)}", unknown[0])
    if "question" not in payload:
        raise RequestError("JSON body needs a 'question' string", "question")
    k = payload.get("k", cfg.top_k)
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= cfg.max_k:
        raise RequestError(f"'k' must be an integer in 1..{cfg.max_k}, got {k!r}", "k")
    return _query(payload["question"], k, True, cfg)


def _query(question: Any, k: int, as_json: bool, cfg: RetrievalConfig) -> Query:
    field = "question" if as_json else "body"
    if not isinstance(question, str):
        raise RequestError(f"'question' must be a string, got {type(question).__name__}", field)
    question = question.strip()
    if not question:
        raise RequestError("the question is empty", field)
    if len(question) > cfg.max_question_chars:
        raise RequestError(
            f"the question has {len(question)} characters; the limit is {cfg.max_question_chars}", field, status=413
        )
    if any(ord(c) < 32 and c not in "\t\n\r" for c in question):
        raise RequestError("the question contains control characters (NUL or similar)", field)
    return Query(question, k, as_json)


def _form_question(request: dict[str, Any]) -> str:
    """A form body (`curl -d "question=..."`) arrives as fields; only `question` is read."""
    value = request.get("question")
    if value is not None:
        return _utf8(bytes(value)) if isinstance(value, (bytes, bytearray)) else value
    # TorchServe drops form fields with empty values, so the text of `curl -d "text"` is lost.
    raise RequestError(
        "no question found: the body arrived as a form (curl -d sends "
        "application/x-www-form-urlencoded); send it with Content-Type: text/plain, "
        'as JSON {"question": ...}, or as the form field question=...'
    )


def _utf8(raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as err:
        raise RequestError(f"the body is not valid UTF-8 ({err.reason} at byte {err.start})") from err


def _parse_json(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise RequestError(f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from err
