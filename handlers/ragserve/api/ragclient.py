"""The LLM endpoint's client of the RAG endpoint, for chat grounded on retrieval: question in, prompt and sources out.

Public names: RAGClient, cut_question.
The two endpoints may run on two hosts (RAG on CPU, the LLM on a GPU), so the LLM worker asks the RAG
endpoint over HTTP, with its JSON contract ({"question", "k", "filter"} -> {"prompt", "sources"}).
Its key: from `rag_key_file` (TorchServe's key_file.json of the RAG host, or a file holding the key
alone; read on every call, so a rotated key is picked up) or, without one, the caller's own
`Authorization` header, which is valid on the RAG endpoint when both endpoints are one TorchServe.
A question longer than the RAG endpoint takes is searched on its start, cut on a word boundary; the prompt
gets the whole question back, so the LLM reads all of it. A refusal of the client's request (the RAG
endpoint's 4xx naming a field) is a 4xx naming the chat parameter; the RAG endpoint down or failing is a 502
(503 when it says 503: busy). A redirect to another origin loses the Authorization header (the urlopen of
api/redirects.py). No TorchServe imports.
"""

from __future__ import annotations

import json
import re
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ragserve.api.contracts import QUOTE_CHARS, quote
from ragserve.api.openai_api import OpenAIError
from ragserve.api.openai_chat import Grounding
from ragserve.api.redirects import urlopen

MAX_QUESTION_CHARS = 2000  # the RAG endpoint's retrieval.max_question_chars by default; its 413 tells a smaller one
LIMIT = re.compile(r"the limit is (\d+)")  # in the RAG endpoint's 413 (api/contracts.py check_text)
PARAMS = {"question": "messages", "k": "rag.k", "filter": "rag.filter"}  # RAG field -> the chat request's parameter


class RAGClient:
    def __init__(self, url: str, key_file: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url
        self.key_file = Path(key_file) if key_file else None
        self.timeout_s = timeout_s
        self.max_question_chars = MAX_QUESTION_CHARS  # lowered when the RAG endpoint's 413 names a smaller limit

    def ask(self, question: str, grounding: Grounding, authorization: str | None) -> tuple[str, list[dict[str, Any]]]:
        """The RAG endpoint's prompt for question and its sources; OpenAIError naming what went wrong."""
        searched = cut_question(question, self.max_question_chars)
        try:
            reply = self._post(searched, grounding, authorization)
        except _TooLong as err:  # the RAG endpoint takes fewer characters than assumed: learn its limit, retry once
            self.max_question_chars = err.limit
            searched = cut_question(question, err.limit)
            reply = self._post(searched, grounding, authorization)
        reply = reply if isinstance(reply, dict) else {}  # JSON, but not an object
        prompt, sources = reply.get("prompt"), reply.get("sources")
        if (
            not isinstance(prompt, str)
            or not isinstance(sources, list)
            or not all(isinstance(s, dict) for s in sources)
        ):
            raise OpenAIError(f"the RAG endpoint {self.url} answered without a prompt and sources", None, 502)
        if searched != question.strip():  # the template holds the question verbatim: put the whole one back
            head, found, tail = prompt.rpartition(searched)
            prompt = head + question.strip() + tail if found else prompt
        return prompt, sources

    def _post(self, question: str, grounding: Grounding, authorization: str | None) -> Any:
        body: dict[str, Any] = {"question": question}
        if grounding.k is not None:
            body["k"] = grounding.k
        if grounding.filter is not None:
            body["filter"] = grounding.filter
        headers = {"Content-Type": "application/json"}
        key = self._key()
        if key or authorization:
            headers["Authorization"] = f"Bearer {key}" if key else authorization
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urlopen(request, timeout=self.timeout_s) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as err:
            raise self._refusal(err.code, err.read().decode("utf-8", "replace")) from err
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise OpenAIError(f"the RAG endpoint {self.url} is not reachable: {err}", None, 502) from err
        except (ValueError, RecursionError) as err:  # not JSON (or not UTF-8), or nested past the parser's stack
            raise OpenAIError(f"the RAG endpoint {self.url} answered no JSON: {err!r:.200}", None, 502) from err

    def _refusal(self, status: int, detail: str) -> Exception:
        """The error for the RAG endpoint's HTTP error: the client's 4xx when it names a field of the client's
        request, else the RAG endpoint's fault (502, or 503 when it is busy)."""
        error = _error_object(detail)
        field = str(error.get("param") or "")
        param = PARAMS.get(field.split(".")[0])
        message = str(error.get("message") or detail)
        if 400 <= status < 500 and param is not None:
            limit = LIMIT.search(message)
            param = param + field[len(field.split(".")[0]) :]  # filter.tags -> rag.filter.tags
            refused = f"the RAG endpoint refused {param}: {message[:QUOTE_CHARS]}"
            if status == 413 and field == "question" and limit and int(limit.group(1)) < self.max_question_chars:
                return _TooLong(refused, int(limit.group(1)))
            return OpenAIError(refused, param, status)
        fault = 503 if status == 503 else 502
        return OpenAIError(f"the RAG endpoint {self.url} answered HTTP {status}: {quote(detail)}", None, fault)

    def _key(self) -> str | None:
        if self.key_file is None:
            return None
        try:
            text = self.key_file.read_text().strip()
            return json.loads(text)["inference"]["key"] if text.startswith("{") else text  # key_file.json, or a key
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise OpenAIError(f"cannot read the RAG endpoint's key from {self.key_file}: {err!r}", None, 502) from err


def cut_question(text: str, max_chars: int) -> str:
    """text stripped and, when longer than max_chars, cut after its last whole word within them (a word longer
    than max_chars is cut inside)."""
    text = text.strip()
    if len(text) <= max_chars:
        return text
    head = re.match(r"(.*\S)\s", text[: max_chars + 1], re.DOTALL)  # a space just past the limit ends a word too
    return head.group(1) if head else text[:max_chars]


class _TooLong(OpenAIError):
    """The RAG endpoint's 413 for a question within the assumed limit: it names its own, smaller one."""

    def __init__(self, message: str, limit: int) -> None:
        super().__init__(message, "messages", 413)
        self.limit = limit


def _error_object(detail: str) -> dict[str, Any]:
    """The RAG handler's OpenAI error object ({} for TorchServe's own errors, such as a wrong key)."""
    try:
        error = json.loads(detail).get("error")
    except (ValueError, AttributeError, RecursionError):
        return {}
    return error if isinstance(error, dict) else {}
