from __future__ import annotations

from langchain_core.documents import Document

from ragserve.config import DEFAULT_TEMPLATE
from ragserve.retrieval.prompt import build_prompt, format_sources
from ragserve.retrieval.retriever import Hit

SEED_PROMPT = (
    "Use the following pieces of context to answer the question at the end. If you don't know the answer, "
    "just say that you don't know, don't try to make up an answer.\n\n"
    "\nfirst chunk\n\nsecond {chunk}\n"
    "\n\nQuestion: What's new?\nHelpful Answer:"
)


def hits() -> list[Hit]:
    return [
        Hit(Document("first chunk", metadata={"source": "https://x.org/a", "title": "A"}), 0.9),
        Hit(Document("second {chunk}", metadata={"source": "docs/b.md", "title": "B"}), 0.5),
    ]


def test_prompt_matches_the_original_demo_byte_for_byte() -> None:
    assert build_prompt("What's new?", hits(), DEFAULT_TEMPLATE) == SEED_PROMPT


def test_sources_name_url_or_path_with_score_and_text() -> None:
    first, second = format_sources(hits())
    assert first == {"url": "https://x.org/a", "title": "A", "score": 0.9, "text": "first chunk"}
    assert second["path"] == "docs/b.md" and "url" not in second


def test_hybrid_sources_carry_the_fusion_score_they_are_ordered_by() -> None:
    hybrid = [Hit(Document("t", metadata={"source": "docs/c.md", "title": "C"}), 0.41, fused=0.8123456789)]
    expected = {"path": "docs/c.md", "title": "C", "score": 0.41, "fused_score": 0.812346, "text": "t"}
    assert format_sources(hybrid)[0] == expected


def test_prompt_module_needs_neither_faiss_nor_torch() -> None:
    import subprocess
    import sys

    code = "import sys, ragserve.retrieval.prompt; print(sorted(m for m in ('faiss', 'torch') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd="handlers")
    assert out.stdout.strip() == "[]"
