"""Prompt assembly: question + retrieved chunks -> the text the LLM endpoint receives.

Public names: build_prompt, format_sources.
The default template is the original demo's, byte for byte (config.DEFAULT_TEMPLATE); each chunk
enters the context as "\\n{chunk text}\\n", as LangChain's stuff chain joined them in the demo.
Applying an LLM's chat template is the LLM endpoint's job, not this module's.
"""

from __future__ import annotations

from typing import Any

from ragserve.retrieval.retriever import Hit


def build_prompt(question: str, hits: list[Hit], template: str) -> str:
    """Fill the template with the hits' texts (best first) and the question."""
    context = "".join(f"\n{hit.document.page_content}\n" for hit in hits)
    # format() does not re-read the substituted values, so braces inside chunks are safe.
    return template.format(context=context, question=question)


def format_sources(hits: list[Hit]) -> list[dict[str, Any]]:
    """The `sources` list of a JSON response: where each chunk came from, its scores and text."""
    sources = []
    for hit in hits:
        source = hit.document.metadata.get("source", "")
        where = "url" if source.startswith(("http://", "https://")) else "path"
        entry = {where: source, "title": hit.document.metadata.get("title", ""), "score": round(hit.score, 6)}
        if published := hit.document.metadata.get("published"):
            entry["published"] = published
        if fetched := hit.document.metadata.get("fetched"):  # crawled pages: when this text was downloaded
            entry["fetched"] = fetched
        if hit.fused is not None:
            entry["fused_score"] = round(hit.fused, 6)
        if hit.rerank is not None:
            entry["rerank_score"] = round(hit.rerank, 6)
        sources.append({**entry, "text": hit.document.page_content})
    return sources
