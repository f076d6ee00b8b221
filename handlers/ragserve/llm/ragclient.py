"""The LLM endpoint's client of the RAG endpoint, for chat grounded on retrieval: question in, prompt and sources out.

Public names: RAGClient.
The two endpoints may run on two hosts (RAG on CPU, the LLM on a GPU), so the LLM worker asks the RAG
endpoint over HTTP, with its JSON contract ({"question", "k", "filter"} -> {"prompt", "sources"}).
Its key: from `rag_key_file` (TorchServe's key_file.json of the RAG host, or a file holding the key
alone; read on every call, so a rotated key is picked up) or, without one, the caller's own
`Authorization` header, which is valid on the RAG endpoint when both endpoints are one TorchServe.
No TorchServe imports.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from ragserve.api.openai_api import Grounding, OpenAIError


class RAGClient:
    def __init__(self, url: str, key_file: str | None = None, timeout_s: float = 30.0) -> None:
        self.url = url
        self.key_file = Path(key_file) if key_file else None
        self.timeout_s = timeout_s

    def ask(self, question: str, grounding: Grounding, authorization: str | None) -> tuple[str, list[dict[str, Any]]]:
        """The RAG endpoint's prompt for question and its sources; OpenAIError naming what went wrong."""
        body = {"question": question}
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
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                reply = json.loads(response.read())
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace")[:500]
            if 400 <= err.code < 500 and '"field"' in detail:  # the RAG endpoint refused this question
                field = json.loads(detail).get("field", "")
                raise OpenAIError(f"the RAG endpoint refused the question: {detail}", f"rag.{field}") from err
            raise OpenAIError(f"the RAG endpoint {self.url} answered HTTP {err.code}: {detail}", None, 502) from err
        except (urllib.error.URLError, TimeoutError, OSError) as err:
            raise OpenAIError(f"the RAG endpoint {self.url} is not reachable: {err}", None, 502) from err
        return reply["prompt"], reply["sources"]

    def _key(self) -> str | None:
        if self.key_file is None:
            return None
        try:
            text = self.key_file.read_text().strip()
            return json.loads(text)["inference"]["key"] if text.startswith("{") else text  # key_file.json, or a key
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise OpenAIError(f"cannot read the RAG endpoint's key from {self.key_file}: {err!r}", None, 502) from err
