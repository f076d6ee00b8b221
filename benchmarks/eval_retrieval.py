#!/usr/bin/env python3
"""Retrieval quality: `make eval`. hit@1/3/5 and MRR@10 per retrieval setting, on one corpus and question set.

  .venv/bin/python benchmarks/eval_retrieval.py                       # every variant of benchmarks/eval.yaml
  .venv/bin/python benchmarks/eval_retrieval.py --variants ours seed  # some of them
  .venv/bin/python benchmarks/eval_retrieval.py --questions my_qa.jsonl

Serves ../shared/corpus/hf-blog/site on 127.0.0.1, crawls it from /blog with each variant's config
(the same Index.load_or_build the server runs; indexes are cached under .cache/eval-index, so a
rerun only re-asks the questions), asks every question and counts a hit at k when one of the top-k
chunks contains the question's evidence string (whitespace folded). Unanswerable questions report
their top score. Writes eval.md and eval.jsonl under benchmarks/results/<date>-<host>/.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import http.server
import json
import logging
import socket
import statistics
import sys
import threading
import time
from datetime import date
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "handlers"))

from ragserve.config import CompileConfig, Config  # noqa: E402
from ragserve.embeddings import Encoder  # noqa: E402
from ragserve.index import Index, index_key  # noqa: E402
from ragserve.pipeline import RAGPipeline  # noqa: E402

MRR_DEPTH = 10


def fold(text: str) -> str:
    return " ".join(text.split())


def serve_site(site: Path, port: int) -> http.server.ThreadingHTTPServer:
    handler = functools.partial(_QuietHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args: object) -> None:
        pass


def variant_config(spec: dict[str, Any], base: dict[str, Any], source: str) -> Config:
    """The base handler section with the variant's overrides merged section by section."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in base.items()}
    for key, value in spec.get("handler", {}).items():
        merged[key] = {**merged.get(key, {}), **value} if isinstance(value, dict) else value
    merged.setdefault("corpus", {})["source"] = source
    merged["index"] = {**merged.get("index", {}), "dir": str(ROOT / ".cache" / "eval-index")}
    merged["compile"] = {"enabled": False}  # eager: same vectors, no minutes of compilation
    return Config.from_mapping(merged, ROOT)


def score_question(hits: list, question: dict[str, Any]) -> dict[str, Any]:
    row = {"id": question["id"], "answerable": question["answerable"], "top_score": hits[0].score if hits else None}
    if question["answerable"]:
        evidence = fold(question["evidence"])
        ranks = [i + 1 for i, hit in enumerate(hits) if evidence in fold(hit.document.page_content)]
        row["rank"] = ranks[0] if ranks else None
        row["top_source"] = hits[0].document.metadata.get("source") if hits else None
    return row


def evaluate(pipeline: RAGPipeline, questions: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], float]:
    """Ask each question alone (as a user would); returns per-question rows and the median latency (ms)."""
    rows, latencies = [], []
    for question in questions:
        start = time.perf_counter()
        hits = pipeline.retrieve([question["question"]], MRR_DEPTH)[0]
        latencies.append((time.perf_counter() - start) * 1e3)
        rows.append(score_question(hits, question))
    return rows, statistics.median(latencies)


def summarise(name: str, rows: list[dict[str, Any]], latency_ms: float, build_s: float | None, chunks: int) -> dict:
    answerable = [r for r in rows if r["answerable"]]
    ranks = [r["rank"] for r in answerable]
    unanswerable = [r["top_score"] for r in rows if not r["answerable"]]
    summary = {"variant": name, "chunks": chunks}
    for k in (1, 3, 5):
        summary[f"hit@{k}"] = sum(1 for r in ranks if r and r <= k) / len(ranks)
    summary["MRR@10"] = sum(1 / r for r in ranks if r) / len(ranks)
    summary["query_ms"] = latency_ms
    summary["build_s"] = build_s
    summary["unanswerable_top_score"] = statistics.mean(unanswerable) if unanswerable else None
    return summary


def run_variant(name: str, cfg: Config, encoders: dict, questions: list[dict[str, Any]]) -> tuple[dict, list]:
    embedding_key = dataclasses.astuple(cfg.embedding)
    if embedding_key not in encoders:
        encoders[embedding_key] = Encoder(cfg.embedding, CompileConfig(enabled=False))
    index = Index.load_or_build(cfg, encoders[embedding_key])
    manifest = json.loads((Path(cfg.index.dir) / index_key(cfg) / "manifest.json").read_text())
    pipeline = RAGPipeline(cfg, encoders[embedding_key], index)
    pipeline.retrieve(["warm-up question"], 1)
    rows, latency_ms = evaluate(pipeline, questions)
    return summarise(name, rows, latency_ms, manifest.get("build_s"), len(index)), rows


def markdown(summaries: list[dict], description: str) -> str:
    lines = [
        description,
        "",
        "| variant | chunks | hit@1 | hit@3 | hit@5 | MRR@10 | query ms | build s | unanswerable top score |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for s in summaries:
        build = f"{s['build_s']:.0f}" if s["build_s"] is not None else "?"
        lines.append(
            f"| {s['variant']} | {s['chunks']} | {s['hit@1']:.2f} | {s['hit@3']:.2f} | {s['hit@5']:.2f} | "
            f"{s['MRR@10']:.2f} | {s['query_ms']:.0f} | {build} | {s['unanswerable_top_score']:.3f} |"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "eval.yaml")
    parser.add_argument("--questions", type=Path, help="QA jsonl (default: the spec's)")
    parser.add_argument("--variants", nargs="*", help="names of the spec's variants to run (default: all)")
    parser.add_argument(
        "--out", type=Path, default=ROOT / "benchmarks" / "results" / f"{date.today()}-{socket.gethostname()}"
    )
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    spec = yaml.safe_load(args.spec.read_text())
    site = (ROOT / spec["site"]).resolve()
    if not site.is_dir():
        raise SystemExit(f"{site} is absent: the eval needs the shared corpus (see ../shared/README.md)")
    questions_path = args.questions or (ROOT / spec["questions"]).resolve()
    questions = [json.loads(line) for line in questions_path.read_text().splitlines() if line.strip()]
    base = yaml.safe_load((ROOT / spec["base_config"]).read_text())["handler"]
    server = serve_site(site, spec["port"])
    source = f"http://127.0.0.1:{spec['port']}{spec['start_path']}"
    encoders: dict = {}
    summaries, all_rows = [], []
    try:
        for variant in spec["variants"]:
            if args.variants and variant["name"] not in args.variants:
                continue
            cfg = variant_config(variant, base, source)
            summary, rows = run_variant(variant["name"], cfg, encoders, questions)
            summaries.append(summary)
            all_rows += [{"variant": variant["name"], **row} for row in rows]
            print(
                f"{variant['name']}: hit@1 {summary['hit@1']:.2f} hit@5 {summary['hit@5']:.2f} "
                f"MRR {summary['MRR@10']:.2f} ({summary['chunks']} chunks)",
                flush=True,
            )
    finally:
        server.shutdown()
    answerable = sum(q["answerable"] for q in questions)
    description = (
        f"Retrieval on {source} (served from {spec['site']}), {len(questions)} questions from "
        f"{questions_path.name} ({answerable} answerable); hit@k: the evidence is in one of the top-k chunks."
    )
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "eval.md").write_text(markdown(summaries, description))
    (args.out / "eval.jsonl").write_text("".join(json.dumps(row) + "\n" for row in all_rows))
    print(markdown(summaries, description))
    print(f"wrote {args.out / 'eval.md'}")


if __name__ == "__main__":
    main()
