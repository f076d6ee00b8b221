"""Request decoding and validation for both endpoints' own contracts; pure functions on plain dicts.

Public names: Query, LLMQuery, RequestError, decode_request, decode_llm_request, check_prompt_tokens, check_unicode,
body_content_type, read_payload, quote.

A request is a TorchServe input dict (`body`/`data` as str, bytes or parsed JSON, or form fields)
plus its Content-Type. Text in -> Query(as_json=False); a JSON object in -> Query(as_json=True).
Anything else raises RequestError, which names the field and becomes an HTTP 4xx error object (replies.py).
Every decoder raises RequestError and nothing else for any body: bytes that are not UTF-8, JSON nested past
MAX_JSON_DEPTH (checked without recursion, so no RecursionError downstream), numbers past Python's digit limit,
wrong types, lone surrogates, impossible dates (tests/test_fuzz_requests.py). Another exception would fail
every request of TorchServe's batch with 503.
No TorchServe imports.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ragserve.config import LLMConfig, RetrievalConfig
from ragserve.llm.generation import Sampling
from ragserve.retrieval.filters import Filter
from ragserve.retrieval.queries import Query

JSON_FIELDS = {"question", "k", "filter"}
FILTER_FIELDS = {"source_prefix", "published_after", "published_before", "tags"}
DATE = re.compile(r"\d{4}-\d{2}-\d{2}")
QUOTE_CHARS = 200  # the most of a refused value an error message repeats
# The deepest JSON body taken. Real ones nest 5 levels (chat content parts), tool schemas a few more; 1,000 `[`
# made json.loads (or a later repr) raise RecursionError, which failed the whole batch.
MAX_JSON_DEPTH = 64
LLM_FIELDS = {
    "prompt",
    "max_new_tokens",
    "temperature",
    "top_p",
    "repetition_penalty",
    "no_repeat_ngram_size",
    "stream",
}


class RequestError(ValueError):
    """A bad request; `field` names the offending request field."""

    def __init__(self, message: str, field: str = "body", status: int = 400) -> None:
        super().__init__(message)
        self.field = field
        self.status = status


def body_content_type(request: dict[str, Any], part_headers: Callable[[str], dict | None]) -> str | None:
    """The Content-Type TorchServe recorded for the request's body part (`data` or `body`)."""
    name = "data" if "data" in request else "body"
    return (part_headers(name) or {}).get("content-type")


def read_payload(request: dict[str, Any], content_type: str | None, form_field: str) -> Any:
    """The request body as text (str) or parsed JSON (anything else); a form gives its `form_field`."""
    payload = request.get("data", request.get("body"))
    if payload is None:
        return _form_value(request, form_field)
    if isinstance(payload, (bytes, bytearray)):
        payload = _utf8(bytes(payload))
        if "json" in (content_type or "").lower():
            payload = _parse_json(payload)
    if not isinstance(payload, str):  # JSON parsed here, or by TorchServe
        _check_depth(payload)
    return payload


@dataclass(frozen=True)
class LLMQuery:
    prompt: str
    sampling: Sampling  # how it decodes (llm/generation.py: the sampling fields' one declaration)
    stream: bool  # send the answer piece by piece (TorchServe intermediate responses)
    as_json: bool  # reply {"answer", "prompt_tokens", "completion_tokens"}


def decode_llm_request(request: dict[str, Any], content_type: str | None, cfg: LLMConfig) -> LLMQuery:
    """Turn one LLM request (a prompt as text, or JSON with sampling overrides) into an LLMQuery."""
    payload = read_payload(request, content_type, "prompt")
    defaults = LLMQuery("", Sampling(**cfg.generate.sampling()), stream=False, as_json=False)
    if isinstance(payload, str):
        return dataclasses.replace(
            defaults, prompt=check_text(payload, "body", cfg.generate.max_prompt_chars, "prompt")
        )
    check_fields(payload, LLM_FIELDS)
    if "prompt" not in payload:
        raise RequestError("JSON body needs a 'prompt' string", "prompt")
    temperature = number_field(payload, "temperature", cfg.generate.temperature, 0.0, 2.0)
    stream = payload.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError(f"'stream' must be true or false, got {quote(stream)}", "stream")
    prompt = check_text(payload["prompt"], "prompt", cfg.generate.max_prompt_chars, "prompt")
    sampling = Sampling(
        max_new_tokens=integer_field(
            payload, "max_new_tokens", cfg.generate.max_new_tokens, cfg.generate.max_new_tokens_limit
        ),
        do_sample=temperature > 0 if "temperature" in payload else cfg.generate.do_sample,
        temperature=temperature or cfg.generate.temperature,
        top_p=number_field(payload, "top_p", cfg.generate.top_p, 1e-6, 1.0),
        repetition_penalty=number_field(
            payload, "repetition_penalty", cfg.generate.repetition_penalty, 1.0, cfg.generate.repetition_penalty_limit
        ),
        no_repeat_ngram_size=integer_field(
            payload,
            "no_repeat_ngram_size",
            cfg.generate.no_repeat_ngram_size,
            cfg.generate.no_repeat_ngram_size_limit,
            minimum=0,
        ),
    )
    return LLMQuery(prompt, sampling, stream=stream, as_json=True)


def check_prompt_tokens(prompt_tokens: int, limit: int) -> None:
    if prompt_tokens > limit:
        raise RequestError(f"the prompt has {prompt_tokens} tokens; the limit is {limit}", "prompt", status=413)


def decode_request(request: dict[str, Any], content_type: str | None, cfg: RetrievalConfig) -> Query:
    """Turn one RAG request into a validated Query, or raise RequestError."""
    payload = read_payload(request, content_type, "question")
    if isinstance(payload, str):
        return _query(payload, cfg.top_k, False, cfg)
    return _json_query(payload, cfg)


def _json_query(payload: Any, cfg: RetrievalConfig) -> Query:
    check_fields(payload, JSON_FIELDS)
    if "question" not in payload:
        raise RequestError("JSON body needs a 'question' string", "question")
    k = integer_field(payload, "k", cfg.top_k, cfg.max_k)
    where = decode_filter(payload["filter"]) if "filter" in payload else None
    return dataclasses.replace(_query(payload["question"], k, True, cfg), filter=where)


def decode_filter(value: Any, field: str = "filter") -> Filter:
    """{"source_prefix": str | [str], "published_after"/"published_before": "YYYY-MM-DD", "tags": [str]}."""
    if not isinstance(value, dict):
        raise RequestError(f"'{field}' must be an object with fields {sorted(FILTER_FIELDS)}", field)
    unknown = sorted(set(value) - FILTER_FIELDS)
    if unknown:
        raise RequestError(
            f"unknown filter field(s) {unknown}; allowed: {sorted(FILTER_FIELDS)}", f"{field}.{unknown[0]}"
        )
    dates = {}
    for name in ("published_after", "published_before"):
        date = value.get(name)
        if date is not None and not (isinstance(date, str) and DATE.fullmatch(date) and _is_date(date)):
            raise RequestError(f"'{field}.{name}' must be a date YYYY-MM-DD, got {quote(date)}", f"{field}.{name}")
        dates[name] = date
    return Filter(_strings(value, "source_prefix", field), tags=_strings(value, "tags", field), **dates)


def _is_date(text: str) -> bool:
    """A real calendar date: 2024-02-29 is, 2024-13-99 and 2023-02-29 are not."""
    try:
        datetime.date.fromisoformat(text)
    except ValueError:
        return False
    return True


def _strings(value: dict[str, Any], name: str, field: str) -> tuple[str, ...]:
    """A string or a list of non-empty strings, as a tuple."""
    items = value.get(name, [])
    items = [items] if isinstance(items, str) else items
    if not isinstance(items, list) or not all(isinstance(i, str) and i for i in items):
        raise RequestError(f"'{field}.{name}' must be a string or a list of non-empty strings", f"{field}.{name}")
    return tuple(items)


def check_fields(payload: Any, allowed: set[str]) -> None:
    """A JSON body must be an object holding only known fields."""
    if not isinstance(payload, dict):
        raise RequestError(f"JSON body must be an object, got {type(payload).__name__}")
    unknown = sorted(set(payload) - allowed)
    if unknown:
        raise RequestError(f"unknown field(s) {quote(unknown)}; allowed: {sorted(allowed)}", unknown[0])


def quote(value: Any, max_chars: int = QUOTE_CHARS) -> str:
    """repr(value) for an error message, cut past max_chars: a refusal never echoes a whole 26 KB tool list."""
    try:
        text = repr(value)
    except (RecursionError, ValueError):  # nested too deeply, or an int past Python's digit limit
        return f"a {type(value).__name__}"
    return text if len(text) <= max_chars else f"{text[:max_chars]}... ({len(text)} characters)"


def integer_field(payload: dict[str, Any], name: str, default: int, maximum: int, minimum: int = 1) -> int:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        raise RequestError(f"'{name}' must be an integer in {minimum}..{maximum}, got {quote(value)}", name)
    return value


def number_field(payload: dict[str, Any], name: str, default: float, low: float, high: float) -> float:
    value = payload.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not low <= value <= high:
        raise RequestError(f"'{name}' must be a number in {low:g}..{high:g}, got {quote(value)}", name)
    return float(value)


def check_text(text: Any, field: str, max_chars: int, what: str) -> str:
    """Strip and validate a question or prompt: a non-empty string without control characters."""
    if not isinstance(text, str):
        raise RequestError(f"'{field}' must be a string, got {type(text).__name__}", field)
    text = text.strip()
    if not text:
        raise RequestError(f"the {what} is empty", field)
    if len(text) > max_chars:
        raise RequestError(f"the {what} has {len(text)} characters; the limit is {max_chars}", field, status=413)
    if any(ord(c) < 32 and c not in "\t\n\r" for c in text):
        raise RequestError(f"the {what} contains control characters (NUL or similar)", field)
    check_unicode(text, field, what)
    return text


def check_unicode(text: str, field: str, what: str) -> None:
    """JSON's \\ud800 escapes give lone surrogates, which no tokenizer or UTF-8 reply can take."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as err:
        raise RequestError(f"the {what} holds a lone surrogate (\\u{ord(text[err.start]):04x}): not valid Unicode",
                           field) from err  # fmt: skip


def _query(question: Any, k: int, as_json: bool, cfg: RetrievalConfig) -> Query:
    field = "question" if as_json else "body"
    return Query(check_text(question, field, cfg.max_question_chars, "question"), k, as_json)


def _form_value(request: dict[str, Any], form_field: str) -> str:
    """A form body (`curl -d "question=..."`) arrives as fields; only form_field is read."""
    value = request.get(form_field)
    if value is not None:
        return _utf8(bytes(value)) if isinstance(value, (bytes, bytearray)) else value
    # TorchServe drops form fields with empty values, so the text of `curl -d "text"` is lost.
    raise RequestError(
        f"no {form_field} found: the body arrived as a form (curl -d sends "
        "application/x-www-form-urlencoded); send it with Content-Type: text/plain, "
        f'as JSON {{"{form_field}": ...}}, or as the form field {form_field}=...'
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
        if _opened_past(text[: err.pos], MAX_JSON_DEPTH):  # the same answer whatever the recursion limit is
            raise RequestError(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep") from err
        raise RequestError(f"malformed JSON: {err.msg} at line {err.lineno} column {err.colno}") from err
    except RecursionError as err:
        raise RequestError(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep") from err
    except ValueError as err:  # an integer past Python's 4,300 digits
        raise RequestError(f"malformed JSON: {err}") from err


def _opened_past(text: str, limit: int) -> bool:
    """Whether JSON text opens more than limit arrays or objects at once (outside strings): read only for a body
    json.loads refused, to say that it is nested too deeply rather than where the parser stopped."""
    depth, in_string, escaped = 0, False, False
    for char in text:
        if in_string:
            escaped, in_string = (False, True) if escaped else (char == "\\", char != '"')
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            if depth > limit:
                return True
        elif char in "]}":
            depth -= 1
    return False


def _check_depth(payload: Any) -> None:
    """Refuse JSON nested past MAX_JSON_DEPTH, walking it with a stack (no recursion)."""
    containers = (dict, list, tuple)
    stack = [(payload, 1)] if isinstance(payload, containers) else []
    while stack:
        value, depth = stack.pop()
        if depth > MAX_JSON_DEPTH:
            raise RequestError(f"the JSON body is nested more than {MAX_JSON_DEPTH} levels deep")
        items = value.values() if isinstance(value, dict) else value
        stack.extend((item, depth + 1) for item in items if isinstance(item, containers))
