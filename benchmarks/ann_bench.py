#!/usr/bin/env python3
"""Exact and approximate vector search at real-corpus sizes: `make bench-ann`.

  .venv/bin/python benchmarks/ann_bench.py                        # 100k and 1M synthetic vectors (~40 min, 2 cores)
  .venv/bin/python benchmarks/ann_bench.py --sizes 100000 --queries 200     # a quick look (~3 min)
  .venv/bin/python benchmarks/ann_bench.py --real index/<line>/versions/<v>  # also an index `make index` built

Per size and kind (flat, HNSW, IVF through ragserve.index.ann, the code a worker runs): build seconds,
index bytes, recall@10 against the flat scan, and search p50/p99 per query, one query at a time on one
thread (a worker's `runtime.search_threads: 1`), at several search settings (efSearch, probes).

Synthetic vectors: 768-d unit vectors made of a direction they all share, a topic, a subtopic (50 vectors
each) and noise, calibrated on the blog index's all-mpnet-base-v2 vectors (a query's best neighbour at cosine
~0.6, the median pair ~0.1-0.3); queries are new points of the same subtopics, so their ten nearest are
near-ties, which makes recall harder than on real text. Uniform random unit vectors would be a worst case no
corpus has: in 768 dimensions every pair is almost orthogonal and "nearest" means little. `--real` runs the kinds over a
built version's chunk vectors with its sentence-window vectors as queries.
Writes report.md, results.csv and setup.json under benchmarks/results/ann-<date>-<host>/.
"""

from __future__ import annotations

import argparse
import io
import resource
import time
from pathlib import Path

import faiss
import numpy as np

from benchlib.report import Results, add_out_argument
from ragserve.config import IndexConfig
from ragserve.index.ann import build_faiss_index, search_params

DIM = 768
FIELDS = ["corpus", "size", "kind", "build", "setting", "build_s", "index_mb", "recall_at_10", "p50_ms", "p99_ms"]


def synthetic(n: int, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """n corpus vectors and `queries` query vectors: unit vectors made of a direction all share, a topic
    (n / 1000 of them), a subtopic (n / 50, each in one topic) and noise, generated in blocks."""
    shape = np.random.default_rng(12345)
    common = shape.standard_normal(DIM).astype(np.float32)
    common /= np.linalg.norm(common)
    topics = shape.standard_normal((max(1, n // 1000), DIM)).astype(np.float32) / np.sqrt(DIM)
    subtopics = shape.standard_normal((max(1, n // 50), DIM)).astype(np.float32) / np.sqrt(DIM)
    owner = shape.integers(0, len(topics), len(subtopics))

    def points(count: int, rng: np.random.Generator) -> np.ndarray:
        out = np.empty((count, DIM), np.float32)
        for start in range(0, count, 100_000):
            stop = min(count, start + 100_000)
            sub = rng.integers(0, len(subtopics), stop - start)
            noise = rng.standard_normal((stop - start, DIM), dtype=np.float32) / np.sqrt(DIM)
            block = 0.45 * common + 0.6 * topics[owner[sub]] + 0.6 * subtopics[sub] + 0.9 * noise
            out[start:stop] = block / np.linalg.norm(block, axis=1, keepdims=True)
        return out

    return points(n, np.random.default_rng(seed)), points(queries, np.random.default_rng(seed + 1))


def per_query_ms(index: faiss.Index, queries: np.ndarray, k: int, params) -> tuple[np.ndarray, list[float]]:
    """Positions (q, k) and each query's wall time, one query per call as a worker's batch of one."""
    found, times = np.empty((len(queries), k), np.int64), []
    for i, query in enumerate(queries):
        start = time.perf_counter()
        _, found[i] = index.search(query[None], k, params=params)
        times.append((time.perf_counter() - start) * 1e3)
    return found, times


def recall(exact: np.ndarray, found: np.ndarray) -> float:
    return float(np.mean([len(set(a) & set(b) - {-1}) / len(a) for a, b in zip(exact, found, strict=True)]))


def index_mb(index: faiss.Index) -> float:
    writer = faiss.VectorIOWriter()
    faiss.write_index(index, writer)
    return faiss.vector_to_array(writer.data).nbytes / 2**20


def measure(corpus: str, vectors: np.ndarray, queries: np.ndarray, settings: dict, threads: int) -> list[dict]:
    """Rows for the flat scan and each (kind, build, search) setting: builds on `threads`, searches on one."""
    rows, n = [], len(vectors)
    flat = build_faiss_index(vectors, "cosine", IndexConfig(kind="flat"))
    faiss.omp_set_num_threads(1)
    exact, flat_times = per_query_ms(flat, queries, 10, None)
    base = {"corpus": corpus, "size": n}
    rows.append({**base, "kind": "flat", "build": "-", "setting": "exact", "build_s": 0.0,
                 "index_mb": index_mb(flat), "recall_at_10": 1.0, **percentiles(flat_times)})  # fmt: skip
    del flat
    for kind, builds in settings.items():
        for build, searches in builds:
            cfg = IndexConfig(kind=kind, **build)
            faiss.omp_set_num_threads(threads)
            start = time.perf_counter()
            index = build_faiss_index(vectors, "cosine", cfg)
            build_s = time.perf_counter() - start
            faiss.omp_set_num_threads(1)
            size = index_mb(index)
            for search in searches:
                searched = IndexConfig(kind=kind, **build, **search)
                found, times = per_query_ms(index, queries, 10, search_params(index, searched))
                label = ", ".join(f"{key} {value}" for key, value in search.items())
                described = ", ".join(f"{key} {value}" for key, value in build.items()) or "default"
                rows.append({**base, "kind": kind, "build": described, "setting": label, "build_s": build_s,
                             "index_mb": size, "recall_at_10": recall(exact, found), **percentiles(times)})  # fmt: skip
                print(rows[-1], flush=True)
            del index
    return rows


def percentiles(times: list[float]) -> dict[str, float]:
    return {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99))}


def settings_for(n: int, kinds: list[str], efs: list[int], probes: list[int]) -> dict:
    lists = max(1, min(n // 39, int(4 * np.sqrt(n))))  # FAISS wants >= 39 training points per list
    settings = {
        "hnsw": [({"hnsw_m": 32, "hnsw_ef_construction": 80}, [{"hnsw_ef_search": ef} for ef in efs])],
        "ivf": [({"ivf_lists": lists}, [{"ivf_probe": p} for p in probes])],
    }
    return {kind: settings[kind] for kind in kinds}


def real_vectors(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """A built version's chunk vectors, and its sentence windows' (or page records') vectors as queries."""
    index = faiss.read_index(str(folder / "index.faiss"))
    chunks = index.reconstruct_n(0, index.ntotal)
    windows = sorted(folder.glob("windows-*/vectors.npy")) or [folder / "pages" / "vectors.npy"]
    queries = np.load(windows[0])
    return chunks, queries[np.random.default_rng(0).permutation(len(queries))[:1000]]


def markdown(rows: list[dict], args: argparse.Namespace) -> str:
    out = io.StringIO()
    out.write("# Exact and approximate search (benchmarks/ann_bench.py)\n\n")
    out.write(f"{args.queries} queries per size, one at a time, 1 FAISS thread; recall@10 against the flat scan. ")
    out.write("Synthetic: 768-d unit vectors in topics and subtopics of 50 (see the script's docstring).\n\n")
    out.write("| corpus | size | kind | build | search | build s | index MB | recall@10 | p50 ms | p99 ms |\n")
    out.write("|---|---:|---|---|---|---:|---:|---:|---:|---:|\n")
    for r in rows:
        out.write(
            f"| {r['corpus']} | {r['size']:,} | {r['kind']} | {r['build']} | {r['setting']} | {r['build_s']:.1f} | "
            f"{r['index_mb']:.0f} | {r['recall_at_10']:.3f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} |\n"
        )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    out.write(f"\nPeak resident memory of the run: {peak:.1f} GB.\n")
    return out.getvalue()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--real", type=Path, help="an index version folder (index/<line>/versions/<id>)")
    parser.add_argument("--build-threads", type=int, default=0, help="FAISS threads while building (0: all)")
    parser.add_argument("--kinds", nargs="+", default=["hnsw", "ivf"], choices=["hnsw", "ivf"])
    parser.add_argument("--hnsw-ef", type=int, nargs="+", default=[64, 128, 256, 512], help="efSearch values")
    parser.add_argument("--ivf-probe", type=int, nargs="+", default=[16, 32, 64, 128], help="nprobe values")
    add_out_argument(parser, "ann")
    args = parser.parse_args()
    results = Results.create("ann", args.out, packages=["numpy"])
    rows, threads = [], args.build_threads or faiss.omp_get_max_threads()
    if args.real:
        chunks, queries = real_vectors(args.real)
        settings = settings_for(len(chunks), args.kinds, args.hnsw_ef, args.ivf_probe)
        rows += measure(f"real ({args.real.name})", chunks, queries, settings, threads)
    for n in args.sizes:
        vectors, queries = synthetic(n, args.queries, seed=n)
        rows += measure(
            "synthetic", vectors, queries, settings_for(n, args.kinds, args.hnsw_ef, args.ivf_probe), threads
        )
        del vectors
    results.write_csv("results.csv", rows, FIELDS)
    print(results.write_report(markdown(rows, args)))


if __name__ == "__main__":
    main()
