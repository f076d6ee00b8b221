"""Grounded chat's sources as OpenAI url_citation annotations, beside the `sources` list every reply keeps.

Public names: annotations, source_url.
annotations(sources, answer_chars) -> [{"type": "url_citation", "url_citation": {"url", "title", "start_index",
"end_index"}}], OpenAI's chat completion shape (openai.types.chat.chat_completion_message.Annotation): one per
distinct URL, best first; the indices span the whole answer, which rests on every source (no inline marks).
A crawled page's URL is its own; a local file's is `file:` and its path relative to the corpus folder's parent
(percent-encoded, e.g. file:ragserve-docs/endpoints.md): the same on every host. No TorchServe imports.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote


def source_url(source: dict[str, Any]) -> str:
    """The source's URL: its `url`, or `file:` and its `path`."""
    return source.get("url") or f"file:{quote(str(source.get('path', '')))}"


def annotations(sources: list[dict[str, Any]] | tuple[dict[str, Any], ...], answer_chars: int) -> list[dict[str, Any]]:
    """One url_citation per distinct source URL, in the order of the sources, each spanning answer_chars."""
    cited: dict[str, dict[str, Any]] = {}
    for source in sources:
        url = source_url(source)
        if url not in cited:
            title = source.get("title") or source.get("path") or url
            span = {"start_index": 0, "end_index": answer_chars}
            cited[url] = {"type": "url_citation", "url_citation": {"url": url, "title": title, **span}}
    return list(cited.values())
