"""Which signal finds a question's page, and what re-weighting by it or BM25's own parameters would change.

  .venv/bin/python benchmarks/page_signals.py --spec benchmarks/eval-pydocs.yaml \
      --variant "= default since session 9: int8 embedder, no page candidates"
  .venv/bin/python benchmarks/page_signals.py --spec benchmarks/eval.yaml \
      --variant "= default since session 9: int8 embedder, no page candidates"

A diagnostic beside `make eval` (issue 35: most misses on the whole Python docs are a wrong page). It reads the
variant's live index version under .cache/eval-index (run eval_retrieval.py on the variant first: this script
builds nothing) and, for every answerable question of the spec's sets:
1. page@1 and page@5 of each page signal: the page record's fused score (what retrieval.page_weight mixes in) and
   its dense and BM25 halves; the best chunk's cosine, the best chunk's BM25, their convex mix; the cosine with the
   page's centroid (the mean of its chunk vectors); and the page of the fused ranking's first chunk;
2. hit@1 and hit@5 when the fused top 60 are re-ranked by (1 - w) * fused + w * their page's best-chunk signal
   (page aggregation, as document-level retrieval sums passage evidence);
3. hit@1/5/10 with BM25's k1 and b changed (bm25s' defaults: 1.5 and 0.75), the rest of retrieval as configured.
Writes report.md under benchmarks/results/page-signals-<date>-<host>/.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import yaml

from benchlib.misses import folded
from benchlib.report import Results, add_out_argument
from benchlib.retrieval_eval import ROOT, read_questions, variant_config
from ragserve.config import CompileConfig, override
from ragserve.embedding.encoder import Encoder
from ragserve.index.bm25 import BM25
from ragserve.index.store import load_current
from ragserve.retrieval.fusion import min_max
from ragserve.retrieval.pipeline import RAGPipeline
from ragserve.retrieval.retriever import Retriever, unit_rows

POOL = 60  # fused hits re-ranked by page aggregation
AGGREGATION_WEIGHTS = (0.0, 0.1, 0.2, 0.3, 0.5)
BM25_PARAMETERS = ((1.5, 0.75), (1.2, 0.75), (0.9, 0.4), (1.2, 0.5), (2.0, 0.75), (1.5, 0.9), (1.2, 0.9))


def page_signals(retriever: Retriever, vectors: np.ndarray, texts: list[str]) -> dict:
    """(n questions, n pages) per signal."""
    index, pages = retriever.index, retriever.index.pages
    owner = pages.page_of_chunks(len(index))
    order = np.argsort(owner, kind="stable")
    starts = np.searchsorted(owner[order], np.arange(len(pages.records)))
    chunk_vectors = index.vectors()
    best_cosine = np.maximum.reduceat((vectors @ chunk_vectors.T)[:, order], starts, axis=1)
    best_bm25 = np.maximum.reduceat(index.bm25.scores(texts)[:, order], starts, axis=1)
    centroids = np.zeros((len(pages.records), chunk_vectors.shape[1]), np.float32)
    np.add.at(centroids, owner, chunk_vectors)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    return {
        "page record (what page_weight mixes in)": retriever.page_scores(vectors, texts),
        "page record, dense half": pages.vectors.best(vectors, len(pages.records)),
        "page record, BM25 half": pages.bm25.scores(texts),
        "best chunk cosine": best_cosine,
        "best chunk BM25": best_bm25,
        "best chunk, 0.7 cosine + 0.3 BM25": 0.7 * unit_rows(best_cosine) + 0.3 * unit_rows(best_bm25),
        "page centroid cosine": vectors @ centroids.T,
    }


def hits(ranked: list, question: dict) -> int | None:
    evidence = folded(question["evidence"])
    return next((i + 1 for i, hit in enumerate(ranked) if evidence in folded(hit.document.page_content)), None)


def rates(ranks: list[int | None], ks: tuple[int, ...]) -> str:
    return " / ".join(f"{sum(1 for r in ranks if r and r <= k) / len(ranks):.2f}" for k in ks)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--spec", type=Path, default=ROOT / "benchmarks" / "eval.yaml")
    parser.add_argument("--variant", required=True, help="a variant of the spec, already run by eval_retrieval.py")
    add_out_argument(parser, "page-signals")
    args = parser.parse_args()
    spec = yaml.safe_load(args.spec.read_text())
    base = override(yaml.safe_load((ROOT / spec["base_config"]).read_text())["handler"], spec.get("base_changes", {}))
    (variant,) = [v for v in spec["variants"] if v["name"] == args.variant]
    cfg = variant_config(variant, base, f"http://127.0.0.1:{spec['port']}{spec['start_path']}")
    encoder = Encoder(cfg.embedding, CompileConfig(enabled=False))
    index = load_current(cfg, encoder)
    retriever = Retriever(index, cfg.retrieval)
    pages = index.pages
    source_page = {record.source: i for i, record in enumerate(pages.records)}
    out = Results.create("page-signals", args.out)
    lines = [
        f'Page signals on {args.spec.name}, variant "{args.variant}" ({len(index)} chunks, {len(pages.records)} pages)',
        "",
    ]
    for path in spec["questions"]:
        questions = [q for q in read_questions((ROOT / path).resolve()) if q["answerable"]]
        if spec.get("slice"):
            questions = [q for q in questions if q["source"] in set(spec["slice"])]
        texts = [q["question"] for q in questions]
        vectors = encoder.embed(texts)
        wanted = [[i for s, i in source_page.items() if s.rstrip("/").endswith("/" + q["source"])] for q in questions]
        lines += [
            f"**{Path(path).stem}** ({len(questions)} answerable)",
            "",
            "| page signal | page@1 | page@5 |",
            "|---|---|---|",
        ]
        signals = page_signals(retriever, vectors, texts)
        for name, scores in signals.items():
            ranks = [int((row > row[w].max()).sum()) + 1 if w else None for row, w in zip(scores, wanted, strict=True)]
            lines.append(f"| {name} | {rates(ranks, (1,))} | {rates(ranks, (5,))} |")
        pipeline = RAGPipeline(cfg, encoder, index)
        found = pipeline.retriever.search(vectors, texts, POOL)
        first = [
            source_page[h[0].document.metadata["source"]] in w if h else False
            for h, w in zip(found, wanted, strict=True)
        ]
        lines += [f"| the fused ranking's first chunk | {np.mean(first):.2f} | - |", ""]
        lines += ["| fused top 60 re-ranked by page aggregation, weight | hit@1 / hit@5 |", "|---|---|"]
        aggregate = signals["best chunk, 0.7 cosine + 0.3 BM25"]
        for weight in AGGREGATION_WEIGHTS:
            ranks = []
            for row, ranked, question in zip(aggregate, found, questions, strict=True):
                fused = min_max({i: h.fused for i, h in enumerate(ranked)})
                page = min_max(
                    {i: float(row[source_page[h.document.metadata["source"]]]) for i, h in enumerate(ranked)}
                )
                order = sorted(fused, key=lambda i: -((1 - weight) * fused[i] + weight * page[i]))
                ranks.append(hits([ranked[i] for i in order], question))
            lines.append(f"| {weight} | {rates(ranks, (1, 5))} |")
        lines += ["", "| BM25 k1, b | hit@1 / hit@5 / hit@10 |", "|---|---|"]
        live = index.bm25
        for k1, b in BM25_PARAMETERS:
            chunks = index.documents()
            headers = [live.scheme.header(chunk.metadata) for chunk in chunks]
            index.bm25 = BM25.build([c.page_content for c in chunks], headers, live.scheme, k1, b)
            found_b = RAGPipeline(cfg, encoder, index).retriever.search(vectors, texts, 10)
            ranks = [hits(ranked, q) for ranked, q in zip(found_b, questions, strict=True)]
            lines.append(
                f"| {k1}, {b}{' (bm25s default)' if (k1, b) == (1.5, 0.75) else ''} | {rates(ranks, (1, 5, 10))} |"
            )
        index.bm25 = live
        lines.append("")
    report = "\n".join(lines)
    print(report)
    print(f"wrote {out.write_report(report)}")


if __name__ == "__main__":
    main()
