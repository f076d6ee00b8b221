"""citations.py: grounded chat's sources as OpenAI url_citation annotations."""

from __future__ import annotations

from openai.types.chat.chat_completion_message import Annotation

from ragserve.api.citations import annotations, source_url


def test_a_crawled_page_keeps_its_url_and_a_local_file_gets_a_stable_file_url() -> None:
    assert source_url({"url": "https://blog.example/post", "path": "ignored"}) == "https://blog.example/post"
    assert source_url({"path": "ragserve-docs/deployment.md"}) == "file:ragserve-docs/deployment.md"
    assert source_url({"path": "docs/ä b.md"}) == "file:docs/%C3%A4%20b.md"


def test_one_annotation_per_distinct_source_best_first_spanning_the_answer() -> None:
    sources = [
        {"path": "docs/tokens.md", "title": "Tokens", "score": 0.9},
        {"url": "https://blog.example/a", "title": "", "score": 0.8},
        {"path": "docs/tokens.md", "title": "Tokens", "score": 0.7},
    ]
    cited = [Annotation.model_validate(a) for a in annotations(sources, 42)]  # OpenAI's own type accepts them
    assert [(a.url_citation.url, a.url_citation.title) for a in cited] == [
        ("file:docs/tokens.md", "Tokens"),
        ("https://blog.example/a", "https://blog.example/a"),  # no title: the URL stands in
    ]
    assert all((a.url_citation.start_index, a.url_citation.end_index) == (0, 42) for a in cited)
    assert annotations([], 5) == []
