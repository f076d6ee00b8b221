#!/usr/bin/env python3
"""Retrieval quality: `make eval`. hit@k and MRR@10 per retrieval setting, on one corpus and several question sets.

  .venv/bin/python benchmarks/eval_retrieval.py                       # every variant of benchmarks/eval.yaml
  .venv/bin/python benchmarks/eval_retrieval.py --variants "default"  # some of them, by name
  .venv/bin/python benchmarks/eval_retrieval.py --questions my_qa.jsonl other.jsonl
  .venv/bin/python benchmarks/eval_retrieval.py --spec benchmarks/eval-pydocs.yaml  # make eval-pydocs: hours on CPU
  .venv/bin/python benchmarks/eval_retrieval.py --spec benchmarks/eval-pydocs.yaml --set corpus.max_pages=40  # a slice
  .venv/bin/python benchmarks/eval_retrieval.py --spec benchmarks/eval-pydocs-slice.yaml  # make eval-pydocs-slice

Serves ../shared/corpus/hf-blog/site on 127.0.0.1, crawls it from /blog with each variant's config
(`make index`'s refresh; versions and the embedding cache live under .cache/eval-index, so a
rerun only re-crawls, with conditional requests, and re-asks the questions), asks every question of
every set (the spec's `questions`:
qa_public, qa_dev and qa_dev_indirect) and counts a hit at k when one of the top-k chunks contains
the question's evidence string (whitespace folded, case-insensitive). Questions are embedded once per encoder and
each variant re-ranks them; query ms = one question's embedding alone (median of 40) + the
variant's median search ms. Settings are chosen on qa_dev + qa_dev_indirect
(148 answerable); qa_public (34) is reported, not tuned on. Unanswerable questions report their top
score. Every answerable question missed at 10 is explained (benchlib/misses.py): is its evidence in a chunk, in
its page's text, where do its page and its best evidence chunk rank (dense, BM25, fused), so which cause:
extraction, split, page missing, wrong page or wrong chunk. Writes report.md (one table for all sets, one
per set, then the misses by cause), questions.jsonl (every question), misses.jsonl (every miss) and
setup.json under benchmarks/results/eval-<date>-<host>/.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchlib.misses import MISS_K, Misses, causes_markdown, count_causes, page_texts
from benchlib.report import Results, add_out_argument
from benchlib.retrieval_eval import ROOT, read_questions, score_question, serve_site, variant_config
from ragserve.config import CompileConfig, Config, assignment, override
from ragserve.embedding.encoder import Encoder
from ragserve.index.builder import refresh
from ragserve.index.store import load_current
from ragserve.retrieval.pipeline import RAGPipeline
from ragserve.runtime import build_device

MRR_DEPTH = 10
HIT_KS = (1, 3, 5, 10)
LATENCY_SAMPLE = 40  # questions embedded one at a time to measure the embedding's share of a query


def in_slice(questions: list[dict[str, Any]], pages: list[str] | None) -> list[dict[str, Any]]:
    """A slice spec (its `slice`: the pages it keeps) asks only the questions it can answer, and the unanswerable."""
    if pages is None:
        return questions
    return [q for q in questions if not q["answerable"] or q["source"] in set(pages)]


class Questions:
    """Every question of every set embedded once per encoder (a variant only re-ranks), and what
    embedding one question alone costs: a user's question is embedded by itself."""

    def __init__(self, encoder: Encoder, question_sets: dict[str, list[dict[str, Any]]]) -> None:
        self.sets = question_sets
        self.vectors = {name: encoder.embed([q["question"] for q in qs]) for name, qs in question_sets.items()}
        sample = [q["question"] for qs in question_sets.values() for q in qs][:LATENCY_SAMPLE]
        self.embed_ms = statistics.median(_timed_ms(lambda q=q: encoder.embed([q])) for q in sample)


def evaluate(pipeline: RAGPipeline, questions: list[dict[str, Any]], vectors: Any) -> tuple[list[dict], float]:
    """Per-question rows and the median search ms for one question (the index side of a query)."""
    rows, search_ms = [], []
    for question, vector in zip(questions, vectors, strict=True):
        start = time.perf_counter()
        hits = pipeline.retriever.search(vector[None, :], [question["question"]], MRR_DEPTH)[0]
        search_ms.append((time.perf_counter() - start) * 1e3)
        rows.append(score_question(hits, question))
    return rows, statistics.median(search_ms)


def _timed_ms(call: Any) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1e3


def summarise(rows: list[dict[str, Any]]) -> dict[str, float | None]:
    """hit@k and MRR@10 over the answerable rows; the mean top score of the unanswerable ones."""
    ranks = [r["rank"] for r in rows if r["answerable"]]
    unanswerable = [r["top_score"] for r in rows if not r["answerable"]]
    summary: dict[str, float | None] = {f"hit@{k}": sum(1 for r in ranks if r and r <= k) / len(ranks) for k in HIT_KS}
    summary["MRR@10"] = sum(1 / r for r in ranks if r) / len(ranks)
    summary["unanswerable_top_score"] = statistics.mean(unanswerable) if unanswerable else None
    return summary


def run_variant(cfg: Config, encoders: dict, question_sets: dict[str, list]) -> tuple[dict, list, list]:
    """Per-set summaries plus chunks, query ms (one embedding + one search), build s and misses by cause;
    every question's row; every miss's row (benchlib/misses.py)."""
    embedding_key = dataclasses.astuple(cfg.embedding)
    if embedding_key not in encoders:
        device = build_device(cfg.runtime)  # a GPU when there is one (float16, embedding.dtype auto)
        embedding = cfg.embedding if device == "cpu" else dataclasses.replace(cfg.embedding, backend="torch")
        encoder = Encoder(embedding, CompileConfig(enabled=False), device)
        encoders[embedding_key] = (encoder, Questions(encoder, question_sets))
    encoder, questions = encoders[embedding_key]
    refresh(cfg, lambda: encoder)  # embeds only what the embedding cache lacks
    index = load_current(cfg, encoder)
    pipeline = RAGPipeline(cfg, encoder, index)
    build_s = index.manifest.get("build_s")  # when the version was first built, with the cache as it was then
    result: dict[str, Any] = {"chunks": len(index), "build_s": build_s, "sets": {}}
    all_rows, search_ms, misses = [], [], []
    explainer = Misses(index, pipeline.retriever, page_texts(cfg, index))
    for name, qs in question_sets.items():
        rows, ms = evaluate(pipeline, qs, questions.vectors[name])
        result["sets"][name] = summarise(rows)
        search_ms.append(ms)
        all_rows += [{"set": name, **row} for row in rows]
        missed = [(q, v) for q, v, row in zip(qs, questions.vectors[name], rows, strict=True) if _missed(row)]
        misses += [{"set": name, **explainer.explain(q, v)} for q, v in missed]
    result["search_ms"] = statistics.median(search_ms)
    result["query_ms"] = questions.embed_ms + result["search_ms"]
    result["causes"] = count_causes(misses)
    return result, all_rows, misses


def _missed(row: dict[str, Any]) -> bool:
    """An answerable question with no evidence chunk in its top MISS_K."""
    return row["answerable"] and (row["rank"] is None or row["rank"] > MISS_K)


def markdown(results: dict[str, dict], description: str) -> str:
    """One table, hit@1 and hit@5 per set; then each set's own table with every metric."""
    sets = list(next(iter(results.values()))["sets"]) if results else []
    head = " | ".join(f"{s} hit@1 | {s} hit@5" for s in sets)
    columns = f"| variant | chunks | {head} | query ms | search ms | build s |"
    lines = [description, "", columns, "|---" * (5 + 2 * len(sets)) + "|"]
    for name, r in results.items():
        cells = " | ".join(f"{r['sets'][s]['hit@1']:.2f} | {r['sets'][s]['hit@5']:.2f}" for s in sets)
        build = f"{r['build_s']:.0f}" if r["build_s"] is not None else "?"
        timing = f"{r['query_ms']:.0f} | {r['search_ms']:.1f}"
        lines.append(f"| {name} | {r['chunks']} | {cells} | {timing} | {build} |")
    for s in sets:
        metrics = [*(f"hit@{k}" for k in HIT_KS), "MRR@10", "unanswerable_top_score"]
        lines += ["", f"**{s}**", "", "| variant | " + " | ".join(metrics) + " |", "|---" * (1 + len(metrics)) + "|"]
        for name, r in results.items():
            values = [r["sets"][s][m] for m in metrics]
            lines.append(f"| {name} | " + " | ".join("-" if v is None else f"{v:.2f}" for v in values) + " |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "eval.yaml")
    parser.add_argument("--questions", type=Path, nargs="+", help="QA jsonl files (default: the spec's)")
    parser.add_argument("--variants", nargs="*", help="names of the spec's variants to run (default: all)")
    parser.add_argument("--set", type=assignment, action="append", default=[], metavar="KEY=VALUE",
                        help="change every variant's setting, e.g. --set corpus.max_pages=40 (repeatable)")  # fmt: skip
    add_out_argument(parser, "eval")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    spec = yaml.safe_load(args.spec.read_text())
    site = (ROOT / spec["site"]).resolve()
    if not site.is_dir():
        raise SystemExit(f"{site} is absent: the eval needs the shared corpus (see ../shared/README.md)")
    paths = args.questions or [(ROOT / q).resolve() for q in spec["questions"]]
    question_sets = {path.stem: in_slice(read_questions(path), spec.get("slice")) for path in paths}
    out = Results.create("eval", args.out)
    # base_changes: what every row of the spec keeps from before a default changed (e.g. the float32 embedder)
    base = override(yaml.safe_load((ROOT / spec["base_config"]).read_text())["handler"], spec.get("base_changes", {}))
    server = serve_site(site, spec["port"])
    source = f"http://127.0.0.1:{spec['port']}{spec['start_path']}"
    encoders: dict = {}
    results, all_rows, all_misses = {}, [], []
    try:
        for variant in spec["variants"]:
            if args.variants and variant["name"] not in args.variants:
                continue
            cfg = variant_config({"handler": override(variant.get("handler", {}), dict(args.set))}, base, source)
            results[variant["name"]], rows, misses = run_variant(cfg, encoders, question_sets)
            all_rows += [{"variant": variant["name"], **row} for row in rows]
            all_misses += [{"variant": variant["name"], **row} for row in misses]
            scores = "  ".join(
                f"{s}: {r['hit@1']:.2f}/{r['hit@5']:.2f}" for s, r in results[variant["name"]]["sets"].items()
            )
            causes = ", ".join(f"{n} {c}" for n, c in results[variant["name"]]["causes"].items() if c)
            print(f"{variant['name']}: hit@1/hit@5 {scores}; misses@{MISS_K}: {causes or 'none'}", flush=True)
    finally:
        server.shutdown()
    counts = ", ".join(
        f"{name} ({sum(q['answerable'] for q in qs)} answerable of {len(qs)})" for name, qs in question_sets.items()
    )
    description = (
        f"Retrieval on {source} (served from {spec['site']}), questions: {counts}; "
        "hit@k: the evidence is in one of the top-k chunks (whitespace folded, case-insensitive)."
    )
    report = markdown(results, description) + "\n" + causes_markdown({n: r["causes"] for n, r in results.items()})
    out.write_jsonl("questions.jsonl", all_rows)
    out.write_jsonl("misses.jsonl", all_misses)
    print(report)
    print(f"wrote {out.write_report(report)}")


if __name__ == "__main__":
    main()
