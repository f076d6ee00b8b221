#!/usr/bin/env python3
"""The int8 embedder's quality gate, first half: `make quant-gate-embed`.

  .venv/bin/python benchmarks/quant_gate_embed.py                 # ~4 min on 2 cores (the int8 export included)
  .venv/bin/python benchmarks/quant_gate_embed.py --chunks 64     # quicker
  .venv/bin/python benchmarks/quant_gate_embed.py --torch         # and the torch backend's pair, compiled (~6 min more)

Chunks of the corpora the project is measured on (the blog mirror's markdown and, when installed, the Python
3.11 docs, cut by the project's own splitter; a seeded sample) and every question of their question sets are
embedded by the float32 ONNX Runtime export and by `embedding.precision: int8` (embedding/int8.py). Reported:
min / 1st percentile / mean cosine between the two, per kind of text; how often a question's nearest chunk
among the sampled chunks is the same (all int8, and int8 questions against float32 chunks: what an int8
query encoder over a float32 index would find; the project never mixes them, the precision is in the index's
identity); texts/s on the chunks and one question's ms (median of 40), each as
int8 / float32 from the same run. The second half is retrieval quality (hit@k) on both corpora:
`make quant-gate-embed` runs the eval's int8 rows beside the float32 defaults (benchmarks/eval.yaml,
eval-pydocs-slice.yaml). int8 becomes a default only where hit@5 stays within 0.01 of float32 on every set.
With --torch the same comparison runs again on the torch backend under torch.compile (float32 against torchao's
int8, per-token activations: aarch64's default path), in its own section; its hit@k is not part of the gate.
Writes report.md and gate.json under benchmarks/results/quant-gate-embed-<date>-<host>/. Nothing is asserted.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import random
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from benchlib.report import Results
from ragserve.config import CompileConfig, CorpusConfig, EmbeddingConfig
from ragserve.embedding.encoder import Encoder
from ragserve.index.vectorsets import embed_with_progress
from ragserve.ingest.corpus import documents, read_pages, split

logger = logging.getLogger("quant_gate_embed")

ROOT = Path(__file__).resolve().parents[1]

SHARED = ROOT.parent / "shared" / "corpus"
CORPORA = {  # name -> (local folder, its question sets)
    "blog": (SHARED / "hf-blog" / "md", sorted((SHARED / "hf-blog").glob("qa_*.jsonl"))),
    "pydocs": (Path("/usr/share/doc/python3.11/html"), sorted((SHARED / "pydocs").glob("qa_*.jsonl"))),
}
PYDOCS_EXCLUDE = ["_sources/*", "_static/*", "_images/*", "_downloads/*", "genindex*", "search.html"]


def corpus_texts(chunks_per_corpus: int, seed: int) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(chunks by corpus, questions by corpus) for the corpora present; a seeded sample of each corpus's chunks."""
    rng = random.Random(seed)
    chunks, questions = {}, {}
    for name, (folder, qa_files) in CORPORA.items():
        if not folder.is_dir():
            print(f"{name}: {folder} is absent, skipped")
            continue
        cfg = CorpusConfig(source=str(folder), exclude=PYDOCS_EXCLUDE if name == "pydocs" else [])
        logger.info("reading and splitting %s (%s)", name, folder)
        texts = [doc.page_content for doc in split(documents(read_pages(cfg)), cfg)]
        chunks[name] = rng.sample(texts, min(chunks_per_corpus, len(texts)))
        questions[name] = [json.loads(line)["question"] for path in qa_files for line in path.open()]
    return chunks, questions


def cosines(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    """Row-wise cosine of unit rows: min, 1st percentile, mean."""
    values = (a * b).sum(axis=1)
    return {"min": float(values.min()), "p1": float(np.percentile(values, 1)), "mean": float(values.mean())}


def compare(
    fp32: Encoder, int8: Encoder, chunks: dict[str, list[str]], questions: dict[str, list[str]]
) -> dict[str, dict]:
    """Per corpus: cosine of chunks and of questions, and the share of questions whose nearest sampled chunk agrees;
    speed: chunk texts/s and one question's ms for each encoder, measured one after the other in this run."""
    gate: dict[str, dict] = {}
    timing = {"fp32": {"seconds": 0.0, "texts": 0}, "int8": {"seconds": 0.0, "texts": 0}}
    for name in chunks:
        vectors = {}
        for label, encoder in (("fp32", fp32), ("int8", int8)):
            start = time.perf_counter()
            chunk_vectors = embed_with_progress(encoder, chunks[name], f"{name} chunks, {label}")
            timing[label]["seconds"] += time.perf_counter() - start
            timing[label]["texts"] += len(chunks[name])
            question_vectors = embed_with_progress(encoder, questions[name], f"{name} questions, {label}")
            vectors[label] = (chunk_vectors, question_vectors)
        (c32, q32), (c8, q8) = vectors["fp32"], vectors["int8"]
        top32 = (q32 @ c32.T).argmax(axis=1)
        same_top = float((top32 == (q8 @ c8.T).argmax(axis=1)).mean())
        mixed_top = float((top32 == (q8 @ c32.T).argmax(axis=1)).mean())  # int8 questions, float32 chunks
        gate[name] = {
            "chunks": len(c32),
            "questions": len(q32),
            "chunk cosine": cosines(c32, c8),
            "question cosine": cosines(q32, q8),
            "same nearest chunk": same_top,
            "same nearest chunk, int8 questions on float32 chunks": mixed_top,
        }
    sample = [q for qs in questions.values() for q in qs][:40]
    speed = {}
    for label, encoder in (("fp32", fp32), ("int8", int8)):
        per_question = []
        for question in sample:
            start = time.perf_counter()
            encoder.embed_query(question)
            per_question.append((time.perf_counter() - start) * 1000)
        speed[label] = {
            "chunk texts/s": timing[label]["texts"] / timing[label]["seconds"],
            "question ms": statistics.median(per_question),
        }
    speed["int8 / fp32"] = {key: speed["int8"][key] / speed["fp32"][key] for key in speed["fp32"]}
    gate["speed"] = speed
    return gate


def markdown(gate: dict[str, dict], recipe: str, backend: str = "ONNX Runtime") -> str:
    lines = [
        f"# int8 embedder gate ({recipe}): int8 against float32, {backend}, same texts, same run",
        "",
        "| corpus | chunks | chunk cos min / p1 / mean | questions | question cos min / p1 / mean | same top chunk | "
        "same top, int8 questions on fp32 chunks |",
        "|---|---:|---|---:|---|---:|---:|",
    ]
    for name, row in gate.items():
        if name == "speed":
            continue
        c, q = row["chunk cosine"], row["question cosine"]
        lines.append(
            f"| {name} | {row['chunks']} | {c['min']:.4f} / {c['p1']:.4f} / {c['mean']:.4f} | {row['questions']} | "
            f"{q['min']:.4f} / {q['p1']:.4f} / {q['mean']:.4f} | {row['same nearest chunk']:.3f} | "
            f"{row['same nearest chunk, int8 questions on float32 chunks']:.3f} |"
        )
    speed = gate["speed"]
    lines += ["", "| encoder | chunk texts/s | one question ms |", "|---|---:|---:|"]
    for label in ("fp32", "int8"):
        lines.append(f"| {label} | {speed[label]['chunk texts/s']:.2f} | {speed[label]['question ms']:.1f} |")
    ratio = speed["int8 / fp32"]
    lines.append(f"| int8 / fp32 | {ratio['chunk texts/s']:.2f}x | {ratio['question ms']:.2f}x |")
    lines += ["", "hit@k on both corpora: the eval's int8 rows (`make quant-gate-embed` runs them after this)."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=str(ROOT / "models" / "all-mpnet-base-v2"))
    parser.add_argument("--chunks", type=int, default=150, help="chunks sampled per corpus")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--torch", action="store_true", help="also the torch backend's pair, under torch.compile")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    from ragserve.embedding.int8 import INT8_RECIPE

    results = Results.create("quant-gate-embed", args.out, packages=("onnxruntime", "torch"))
    fp32_cfg = EmbeddingConfig(model_path=args.model, backend="onnxruntime")
    fp32 = Encoder(fp32_cfg, CompileConfig(enabled=False))
    start = time.perf_counter()
    int8 = Encoder(dataclasses.replace(fp32_cfg, precision="int8"), CompileConfig(enabled=False))
    results.setup["int8 encoder ready (export on first use)"] = f"{time.perf_counter() - start:.1f} s"
    chunks, questions = corpus_texts(args.chunks, args.seed)
    if not chunks:
        sys.exit(f"no corpus found under {SHARED} or /usr/share/doc/python3.11/html: nothing to compare")
    gate = compare(fp32, int8, chunks, questions)
    text = markdown(gate, INT8_RECIPE)
    if args.torch:  # compiled, as served; fp32 and int8 torch encoders each warm up (compile) when built
        torch_cfg = dataclasses.replace(fp32_cfg, backend="torch")
        compiled = CompileConfig(enabled=True)
        torch_fp32 = Encoder(torch_cfg, compiled)
        torch_int8 = Encoder(dataclasses.replace(torch_cfg, precision="int8"), compiled)
        gate["torch"] = compare(torch_fp32, torch_int8, chunks, questions)
        section = markdown(gate["torch"], INT8_RECIPE, "torch.compile (torchao int8, per-token)")
        text += "\n" + section.replace("# ", "## ", 1)
    results.write_json("gate.json", gate)
    report = results.write_report(text)
    print(report.read_text().split("## Set-up")[0])
    print(f"written to {results.folder}")


if __name__ == "__main__":
    main()
