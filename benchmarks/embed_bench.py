#!/usr/bin/env python3
"""Embedding micro-benchmark: one machine, one run, the same texts for every variant.

  .venv/bin/pip install -r benchmarks/requirements.txt    # onnxruntime, onnx, onnxscript (benchmark only)
  .venv/bin/python benchmarks/embed_bench.py               # full run: about 7 min on an idle 2-core machine
  .venv/bin/python benchmarks/embed_bench.py --quick       # smoke run: 4 chunks, one repeat (compile included)
  .venv/bin/python benchmarks/embed_bench.py --cold-compile --variants sentence-transformers,ours-compiled

The full run's compile time is a warm-cache one once the persistent Inductor cache (compile.cache_dir) holds
this model's kernels; --cold-compile compiles into an empty cache instead (about 5 more minutes here).

Variants (all on the weights in models/all-mpnet-base-v2, CPU):
  sentence-transformers  SentenceTransformer(folder).encode(normalize_embeddings=True, batch_size=16): the reference
  ours-eager             ragserve.embedding.encoder.Encoder with CompileConfig(enabled=False)
  ours-compiled          Encoder with the default CompileConfig (torch.compile, warmed up in the constructor)
  onnxruntime            the project's `embedding.backend: onnxruntime` (ragserve/onnxrt.py): SentenceEmbedder
                         exported once with torch.onnx (dynamic axes) into the model folder's onnx/, run by onnxruntime
  onnxruntime-int8       `embedding.precision: int8` (ragserve/embedding/int8.py): the same export smoothed, the FFN
                         down-projection's outlier channels split off in float32, then ONNX Runtime's dynamic int8
  int8-dynamic           Encoder whose Linear layers went through torch.ao quantize_dynamic (qint8); fast but
                         lossy, so read its cosine column before its speed

Workloads: `query`, one ~15-word question at batch 1; `chunks`, 64 chunks of ~1000 characters cut from the
default corpus (corpus/ragserve-docs/) by ragserve.ingest.corpus.split. Each (variant, workload) runs once untimed
on its first batch (16 texts), then --query-repeats / --repeats times. Threads: torch.set_num_threads(--threads)
and onnxruntime's intra-op threads.
Reported per row: median and p90 latency, throughput (texts/s), both as ratios to sentence-transformers,
and the minimum cosine between the variant's vectors and sentence-transformers' (quality). Also: set-up
time (load, compile + warm-up, ONNX export) and the number of dynamo graphs before and after the timed
runs (a rise means a recompilation). Results go to benchmarks/results/embed-<date>-<host>/ (--quick:
embed-quick-<date>-<host>/): report.md, results.csv and setup.json.
Nothing is asserted: numbers depend on the machine and on what else it runs (the load average is recorded).
"""

from __future__ import annotations

import argparse
import dataclasses
import gc
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from benchlib.embedders import REFERENCE, Embed, Variant, build_variant
from benchlib.report import Results, add_out_argument
from ragserve.compilation import compiled_graph_count
from ragserve.config import Config
from ragserve.ingest.corpus import load_documents, split

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("sentence-transformers", "onnxruntime", "onnx", "onnxscript")  # recorded in the set-up

QUERY = "How does the RAG endpoint split documents into chunks before it builds the FAISS index?"  # 15 words
VARIANTS = (REFERENCE, "ours-eager", "ours-compiled", "onnxruntime", "onnxruntime-int8", "int8-dynamic")


@dataclass(frozen=True)
class Workload:
    name: str
    texts: list[str]
    repeats: int


@dataclass(frozen=True)
class Row:  # one line of results.csv (ROW_FIELDS)
    variant: str
    workload: str
    texts: int
    repeats: int
    median_ms: float
    p90_ms: float
    texts_per_s: float
    latency_vs_st: float  # median latency / sentence-transformers' (< 1: faster)
    throughput_vs_st: float  # texts/s / sentence-transformers' (> 1: faster)
    min_cosine_vs_st: float
    cpu_share: float  # process CPU time / (wall x threads) during the timed calls
    setup_s: float


ROW_FIELDS = [f.name for f in dataclasses.fields(Row)]


# ---------------------------------------------------------------- texts


def chunk_texts(n: int, chunk_size: int = 1000) -> list[str]:
    """The n longest chunks of the default corpus (split at chunk_size characters), in order; repeated if too few."""
    cfg = Config.from_mapping({"corpus": {"source": "corpus/ragserve-docs", "chunk_size": chunk_size}}, root=ROOT)
    chunks = [doc.page_content for doc in split(load_documents(cfg.corpus), cfg.corpus, cfg.embedding.model_path)]
    longest = sorted(sorted(range(len(chunks)), key=lambda i: len(chunks[i]), reverse=True)[:n])
    picked = [chunks[i] for i in longest]
    return (picked * (n // max(len(picked), 1) + 1))[:n]


def make_workloads(args: argparse.Namespace) -> list[Workload]:
    return [
        Workload("query", [QUERY], args.query_repeats),
        Workload("chunks", chunk_texts(args.chunks), args.repeats),
    ]


# ---------------------------------------------------------------- measuring


@dataclass(frozen=True)
class Timing:
    seconds: list[float]  # wall time of each timed call
    cpu_share: float  # process CPU time / (wall time x threads) over the timed calls; well below 1: contended
    vectors: np.ndarray  # the last call's output


def time_calls(embed: Embed, texts: list[str], repeats: int, warm_up: int, threads: int) -> Timing:
    """One untimed call on the first `warm_up` texts (one batch: warms the shape), then `repeats` timed ones."""
    embed(texts[:warm_up])
    seconds, vectors = [], None
    cpu_start = time.process_time()
    for _ in range(repeats):
        start = time.perf_counter()
        vectors = embed(texts)
        seconds.append(time.perf_counter() - start)
    cpu_share = (time.process_time() - cpu_start) / (sum(seconds) * threads)
    return Timing(seconds, cpu_share, np.asarray(vectors, dtype=np.float32))


def min_cosine(vectors: np.ndarray, reference: np.ndarray) -> float:
    a = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    b = reference / np.linalg.norm(reference, axis=1, keepdims=True)
    return float((a * b).sum(axis=1).min())


def make_row(variant: Variant, workload: Workload, timing: Timing, cosine: float, st_median: float) -> Row:
    seconds = timing.seconds
    median = statistics.median(seconds)
    return Row(
        variant=variant.name,
        workload=workload.name,
        texts=len(workload.texts),
        repeats=len(seconds),
        median_ms=median * 1e3,
        p90_ms=float(np.percentile(seconds, 90)) * 1e3,
        texts_per_s=len(workload.texts) / median,
        latency_vs_st=median / st_median,
        throughput_vs_st=st_median / median,
        min_cosine_vs_st=cosine,
        cpu_share=timing.cpu_share,
        setup_s=variant.setup_s,
    )


@dataclass
class RunState:
    """What the run collects: rows, the reference's vectors and medians, notes, graph counts."""

    rows: list[Row] = field(default_factory=list)
    reference: dict[str, np.ndarray] = field(default_factory=dict)
    st_median: dict[str, float] = field(default_factory=dict)
    notes: dict[str, list[str]] = field(default_factory=dict)
    graphs: dict[str, int] = field(default_factory=dict)


def run_variant(name: str, cfg: Config, workloads: list[Workload], state: RunState, threads: int) -> None:
    state.graphs[f"{name}: before constructor"] = compiled_graph_count()
    variant = build_variant(name, cfg, threads)
    state.graphs[f"{name}: after constructor"] = compiled_graph_count()
    for workload in workloads:
        timing = time_calls(variant.embed, workload.texts, workload.repeats, cfg.embedding.batch_size, threads)
        if name == REFERENCE:
            state.reference[workload.name] = timing.vectors
            state.st_median[workload.name] = statistics.median(timing.seconds)
        cosine = min_cosine(timing.vectors, state.reference[workload.name])
        state.rows.append(make_row(variant, workload, timing, cosine, state.st_median[workload.name]))
    state.graphs[f"{name}: after timed runs"] = compiled_graph_count()
    recompiled = state.graphs[f"{name}: after timed runs"] - state.graphs[f"{name}: after constructor"]
    if name == "ours-compiled" or recompiled:
        variant.notes.append(f"{recompiled} graph(s) compiled during the workload calls (recompilations)")
    state.notes[name] = variant.notes
    print(progress_line(name, variant, state.rows[-len(workloads) :]), flush=True)


def progress_line(name: str, variant: Variant, rows: list[Row]) -> str:
    parts = [
        f"{r.workload} {r.median_ms:.1f} ms ({r.texts_per_s:.1f} texts/s, cos {r.min_cosine_vs_st:.4f})" for r in rows
    ]
    return f"[{name}] set-up {variant.setup_s:.1f} s; " + "; ".join(parts)


# ---------------------------------------------------------------- reporting


HEADER = (
    "| variant | workload | texts | repeats | median ms | p90 ms | texts/s | latency ×ST | throughput ×ST "
    "| min cos vs ST | CPU use | set-up s |"
)


def markdown_table(rows: list[Row]) -> str:
    lines = [HEADER, "|" + "---|" * HEADER.count(" | ") + "---|"]
    for r in rows:
        lines.append(
            f"| {r.variant} | {r.workload} | {r.texts} | {r.repeats} | {r.median_ms:.1f} | {r.p90_ms:.1f} "
            f"| {r.texts_per_s:.2f} | {r.latency_vs_st:.2f} | {r.throughput_vs_st:.2f} "
            f"| {r.min_cosine_vs_st:.4f} | {r.cpu_share:.0%} | {r.setup_s:.1f} |"
        )
    return "\n".join(lines)


def markdown(state: RunState, date: str, workloads: list[Workload]) -> str:
    """report.md's body (report.Results appends the machine and run set-up)."""
    lines = [f"# Embedding micro-benchmark, {date}", "", "## Workloads", ""]
    for w in workloads:
        chars = statistics.mean(len(t) for t in w.texts)
        lines.append(f"- `{w.name}`: {len(w.texts)} text(s), mean {chars:.0f} characters, {w.repeats} timed repeats")
    lines.append("- each (variant, workload) runs once untimed on its first batch (warm-up), then the timed repeats")
    lines += ["", "## Results", "", markdown_table(state.rows), ""]
    lines += [
        "latency ×ST = median latency / sentence-transformers' median (below 1 is faster); throughput ×ST = its",
        "inverse. min cos vs ST = the lowest cosine between a variant's vector and sentence-transformers' for",
        "the same text. CPU use = this process's CPU time / (wall time x threads) over the timed calls: well",
        "below 100% means it did not get its threads (another process was running; see the load average).",
        "set-up s = constructor time (model load; compile + warm-up; ONNX export when not cached).",
        "",
        "## Notes",
        "",
    ]
    lines += [f"- {name}: {note}" for name, notes in state.notes.items() for note in notes]
    lines += ["", "## Dynamo graph count (process-wide)", ""]
    lines += [f"- {stage}: {count}" for stage, count in state.graphs.items()]
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------- main


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)), help="default: all cores")
    parser.add_argument("--repeats", type=int, default=2, help="timed repeats of the 64-chunk workload")
    parser.add_argument("--query-repeats", type=int, default=20, help="timed repeats of the batch-1 query")
    parser.add_argument("--chunks", type=int, default=64, help="texts in the chunks workload")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"comma-separated subset of {VARIANTS}")
    parser.add_argument("--cold-compile", action="store_true", help="compile into a fresh, empty Inductor cache")
    parser.add_argument("--quick", action="store_true", help="smoke run: 4 chunks, 1 repeat, 2 query repeats")
    add_out_argument(parser, "embed")
    args = parser.parse_args(argv)
    if args.quick:
        args.repeats, args.query_repeats, args.chunks = 1, 2, 4
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown or REFERENCE not in args.variants:
        parser.error(f"--variants must name {REFERENCE} and only {VARIANTS}; got {args.variants}")
    args.variants = [v for v in VARIANTS if v in args.variants]  # the reference runs first
    return args


def setup_environment(threads: int) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # "torchvision is not installed" x4
    warnings.filterwarnings("ignore", category=DeprecationWarning)
    torch.set_num_threads(threads)
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()


def project_config(cold_compile: bool) -> Config:
    """The project's default config (paths resolved against the repository), optionally with an empty cache."""
    cfg = Config.from_mapping({}, root=ROOT)
    if cold_compile:
        cold = dataclasses.replace(cfg.compile, cache_dir=tempfile.mkdtemp(prefix="embed-bench-inductor-"))
        cfg = dataclasses.replace(cfg, compile=cold)
    # compile_module only sets TORCHINDUCTOR_CACHE_DIR when it is unset, and importing sentence_transformers
    # (the first variant) already sets it to Inductor's default (/tmp/torchinductor_<user>): set it first.
    if cfg.compile.cache_dir:
        os.makedirs(cfg.compile.cache_dir, exist_ok=True)
        if cold_compile:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = cfg.compile.cache_dir
        else:
            os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", cfg.compile.cache_dir)
    return cfg


def warn_if_busy() -> None:
    load = os.getloadavg()[0]
    cores = len(os.sched_getaffinity(0))
    if load > 0.5 * cores:
        print(f"warning: load average {load:.1f} on {cores} cores: timings will be contended", file=sys.stderr)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_environment(args.threads)
    cfg = project_config(args.cold_compile)
    workloads = make_workloads(args)
    inductor_cache = os.environ.get("TORCHINDUCTOR_CACHE_DIR", "")
    cache_warm = bool(inductor_cache) and Path(inductor_cache).is_dir() and any(Path(inductor_cache).iterdir())
    results = Results.create("embed-quick" if args.quick else "embed", args.out, PACKAGES)
    results.setup["threads (torch, onnxruntime intra-op)"] = str(args.threads)
    results.setup["Inductor cache at start"] = f"{inductor_cache} ({'warm' if cache_warm else 'empty: cold compile'})"
    warn_if_busy()
    state = RunState()
    for name in args.variants:
        run_variant(name, cfg, workloads, state, args.threads)
        gc.collect()
    csv_path = results.write_csv("results.csv", [dataclasses.asdict(row) for row in state.rows], ROW_FIELDS)
    report_path = results.write_report(markdown(state, results.setup["date"], workloads))
    print(markdown_table(state.rows))
    print(f"\nwritten: {report_path}, {csv_path}")


if __name__ == "__main__":
    main()
